"""The Space's own modules, beside ``app.py`` (which builds the page from them).

``settings`` what the environment sets; ``texts`` the notices and the About page; ``models`` loading the two
models once; ``render`` every result as Markdown or an image; ``handlers`` the event handlers (errors and
progress included); ``triage_form`` the triage inputs and the typed ``/triage`` API; ``examples`` the example
images; ``tabs`` the diagnosis tab builder. Every number shown comes from the ``as_ai`` library.
"""
