"""The multimodal safety analyzer: one request (image, user text, optionally the model's answer)
judged by every engine of the guard, and one verdict with its reasons.

    injection   guard/scan.py        text in the pixels, QR codes and metadata, judged
    content     guard/safety.py      unsafe-content categories by zero-shot scoring
    obedience   guard/safety.py      does the answer carry out what the image's text asked
                                     (a canary it requested, the output it dictated)?
    grounding   guard/consistency.py claims of the answer the image does not support

Verdict, most severe first:
    block  the answer obeyed instructions that came from the image, or the image hides an
           injection (hidden text, QR code or metadata);
    warn   an injection in plain sight, an unsafe-content category, or claims of the answer the
           image does not support;
    allow  none of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polymodal.errors import InvalidInputError

# Evidence of obedience at or above this confidence blocks. 0.45 admits a code-like canary (0.95)
# halved because the directive around it was not recognised: OCR garbles it ("andrespondonly
# withZX-4821-QP"), and the texts passed here were already judged injections.
OBEY_CONFIDENCE = 0.45


@dataclass
class Analysis:
    verdict: str  # block | warn | allow
    reasons: list[str]
    injection: dict  # ScanReport.to_dict()
    content: dict  # SafetyReport.to_dict()
    obedience: list[dict] = field(default_factory=list)  # safety.Evidence dicts
    grounding: dict | None = None  # ConsistencyReport.to_dict(), when an answer was given
    prompt: str | None = None

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "reasons": self.reasons, "prompt": self.prompt, "injection": self.injection,
                "content": self.content, "obedience": self.obedience, "grounding": self.grounding}


def _check_text(name: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got a {type(value).__name__}")
    return value if value.strip() else None


def analyze(image, *, prompt: str | None = None, answer: str | None = None, model=None) -> Analysis:
    """Judge one vision-language request. `image`: a path, bytes, PIL image or array; `prompt`: the
    user's text; `answer`: the model's reply, if there is one; `model`: the dual encoder for the
    content and grounding checks (default `lite`)."""
    from polymodal.guard.consistency import check_consistency
    from polymodal.guard.safety import answer_obeys_image, safety_categories
    from polymodal.guard.scan import DERIVED, scan_image
    from polymodal.media import load_image

    prompt, answer = _check_text("prompt", prompt), _check_text("answer", answer)
    scan = scan_image(image)
    picture = load_image(image)
    content = safety_categories(picture, model=model)
    reasons_block, reasons_warn = [], []

    injected = [f.text for f in scan.findings if f.flagged]
    obedience = []
    if answer and injected:
        obedience = [e for e in answer_obeys_image(answer, injected) if e.confidence >= OBEY_CONFIDENCE]
        for e in obedience:
            reasons_block.append(f"the answer carries out an instruction from the image: it contains "
                                 f"{e.matched!r}, which the image's text asked for ({e.kind})")
    if scan.flagged:
        where = sorted({f.source.split(":")[0] for f in scan.findings if f.flagged and f.source not in DERIVED})
        described = f"injection in the image ({', '.join(scan.techniques)}; found in {', '.join(where) or 'text'})"
        (reasons_block if scan.hidden_injection else reasons_warn).append(
            ("hidden " if scan.hidden_injection else "visible ") + described)
    for category in content.flagged:
        reasons_warn.append(f"unsafe content: {category}")
    grounding = None
    if answer:
        report = check_consistency(picture, answer, model=model)
        grounding = report.to_dict()
        # Objects and scenes only: colour and count verdicts of the default model are hints, too
        # unreliable to warn on (docs/guard/consistency.md measures them); they stay in `grounding`.
        unsupported = [c for c in report.unsupported if c.kind in ("object", "scene")]
        if unsupported:
            shown = ", ".join(dict.fromkeys(repr(c.phrase) for c in unsupported[:5]))
            reasons_warn.append(f"the answer makes claims the image does not support: {shown}")
    verdict = "block" if reasons_block else ("warn" if reasons_warn else "allow")
    return Analysis(verdict, reasons_block + reasons_warn, scan.to_dict(), content.to_dict(),
                    [e.to_dict() for e in obedience], grounding, prompt)
