"""The guard's HTTP routes: scan an uploaded image for injections; analyze a whole request.

Same rules as the search upload: the size is capped by the server's upload limit and the type is
decided by the content. The work runs in the thread pool (OCR and the models are CPU-bound).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field


class GuardFinding(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str
    source: str = Field(description="ocr:<view>, block (lines judged together), qr or metadata:<key>")
    box: list[int] | None = Field(description="[x0, y0, x1, y1] in image pixels; null for metadata")
    score: float = Field(description="the injection judge's score, 0..1; flagged at >= 0.5")
    flagged: bool
    techniques: list[str]
    hidden: float = Field(description="0 plain sight .. 1 invisible to a person")


class GuardScanOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    verdict: str = Field(description="injection or clean")
    risk: float
    flagged: bool
    hidden_injection: bool
    techniques: list[str]
    findings: list[GuardFinding]
    width: int | None
    height: int | None
    seconds: float


class GuardAnalysisOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    verdict: str = Field(description="block, warn or allow")
    reasons: list[str]
    injection: dict[str, Any]
    content: dict[str, Any]
    obedience: list[dict[str, Any]]
    grounding: dict[str, Any] | None


async def _read_upload(image: UploadFile, limit: int) -> bytes:
    from polymodal.media import probe_image

    data = await image.read(limit + 1)
    await image.close()
    if len(data) > limit:
        raise HTTPException(413, f"the uploaded image is larger than this server's limit of {limit:,} bytes; start "
                                 f"the server with a larger --max-upload-mb to allow more")
    probe_image(data, source=f"uploaded file {image.filename!r}" if image.filename else "uploaded file")
    return data


def add_guard_routes(api: APIRouter, max_upload_bytes: int, errors: dict) -> None:
    upload_errors = {**errors, 413: errors.get(400, {}) | {"description": "image too large"},
                     415: errors.get(400, {}) | {"description": "not an image format we read"}}

    @api.post("/guard/scan", response_model=GuardScanOut, tags=["guard"], responses=upload_errors,
              summary="find prompt injections in an uploaded image (pixels, QR codes, metadata)")
    async def guard_scan(image: Annotated[UploadFile, File(description="the image to scan")]):
        from polymodal.guard.scan import scan_image

        data = await _read_upload(image, max_upload_bytes)
        report = await run_in_threadpool(scan_image, data)
        out = report.to_dict()
        out["source"] = image.filename or "upload"
        return out

    @api.post("/guard/analyze", response_model=GuardAnalysisOut, tags=["guard"], responses=upload_errors,
              summary="judge a vision-language request: image, prompt and the model's answer")
    async def guard_analyze(image: Annotated[UploadFile, File(description="the image sent to the model")],
                            prompt: Annotated[str | None, Form(max_length=20000)] = None,
                            answer: Annotated[str | None, Form(max_length=20000)] = None):
        from polymodal.guard.analyze import analyze

        data = await _read_upload(image, max_upload_bytes)
        result = await run_in_threadpool(lambda: analyze(data, prompt=prompt, answer=answer))
        return result.to_dict()
