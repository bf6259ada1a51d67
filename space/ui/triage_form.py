"""The triage inputs: one form field per feature of the model's schema, and the typed ``/triage`` API."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Optional

import gradio as gr

if TYPE_CHECKING:  # pragma: no cover
    from .handlers import Handlers


def feature_inputs(triager: Any) -> list[tuple[str, gr.components.Component]]:
    """One input per feature of the triage model's schema: numbers with unit and rule, yes/no radios.

    Numbers are text boxes (a phone shows its decimal keypad, see ``HEAD``) because an empty box must
    mean "unknown" (Gradio's number box shows 0 when empty). Ranges are stated, not enforced here: the
    library's schema checks them and names any bad field.
    """
    comps = []
    for f in triager.schema.features:
        need = "leave empty if unknown" if f.imputable else "required"
        if f.type == "bool":
            c = gr.Radio(["yes", "no"], value=None, label=f.label, info=need, elem_id=f"tri-{f.name}")
        else:
            label = f"{f.label} ({f.unit})" if f.unit else f.label
            c = gr.Textbox(value="", label=label, info=f"{f.describe()}; {need}", elem_id=f"tri-{f.name}",
                           placeholder="unknown" if f.imputable else "required", lines=1, max_lines=1,
                           elem_classes=["as-ai-number"],
                           html_attributes=gr.InputHTMLAttributes(autocorrect="off", spellcheck=False,
                                                                  autocomplete="off", enterkeyhint="next"))
        comps.append((f.name, c))
    return comps


def parse_value(value: Any) -> Any:
    """A form value as the library takes it: empty -> None (unknown), "12,5" / "12.5" -> 12.5.

    Text that is not a number is passed on unchanged, so the library's schema names the field and the rule.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text.replace(",", "."))
        except ValueError:
            return text
    return value


def triage_api(handlers: "Handlers", schema: Any) -> Callable:
    """The typed ``/triage`` API endpoint: one keyword per schema feature (numbers as numbers, yes/no as
    booleans, ``None`` = unknown), documented with its unit, range and whether it may be left unknown.

    The page's form (text boxes, so that an empty box means unknown) calls the same handler privately.
    Returns (scores markdown, risk-group markdown, risk plot PNG, the Triage as a dict).
    """
    from gradio.data_classes import FileData

    def triage(*values: Any) -> tuple[str, str, FileData, dict]:
        scores, risk, plot, result = handlers.triage(dict(zip(schema.names, (parse_value(v) for v in values))))
        return scores, risk, FileData(path=plot), result

    params, lines = [], []
    for f in schema.features:
        kind = Optional[bool] if f.type == "bool" else Optional[float]
        params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=kind))
        unit = f" ({f.unit})" if f.unit else ""
        lines.append(f"- {f.name}: {f.label}{unit}; {f.describe()}; "
                     + ("may be None (unknown, imputed)" if f.imputable else "required"))
    triage.__signature__ = inspect.Signature(params, return_annotation=tuple[str, str, FileData, dict])  # type: ignore[attr-defined]
    triage.__annotations__ = {p.name: p.annotation for p in params} | {"return": tuple[str, str, FileData, dict]}
    triage.__doc__ = ("Predict BASFI and BASDAI with prediction intervals and the surgical-risk group for one "
                      "patient (phantom-trained demo models: not for clinical use). Parameters:\n" + "\n".join(lines))
    return triage
