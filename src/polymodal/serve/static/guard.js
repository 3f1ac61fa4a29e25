// The "Check an image" view: POST /api/guard/analyze with an image, and optionally the user's
// prompt and the model's answer; show the verdict, its reasons, the text found (outlined on the
// image) and how each piece was judged. The image is shown from the local File (a blob: URL), so
// nothing is fetched back from the server.

import { pickImages } from "./imagepick.js";

const SVG = "http://www.w3.org/2000/svg";
const VERDICTS = {
  block: "Block: do not send this to a model",
  warn: "Warn: look before you trust it",
  allow: "Allow: nothing found",
};

const $ = (id) => document.getElementById(id);

export function setupGuard(apiJson) {
  const ui = {
    form: $("guard-form"), drop: $("guard-drop"), file: $("guard-file"), name: $("guard-name"),
    prompt: $("guard-prompt"), answer: $("guard-answer"), go: $("guard-go"), status: $("guard-status"),
    result: $("guard-result"), verdict: $("guard-verdict"), reasons: $("guard-reasons"),
    image: $("guard-image"), boxes: $("guard-boxes"), findings: $("guard-findings").tBodies[0],
  };
  const state = { file: null, url: null, seq: 0 };

  const say = (text, isError = false) => {
    ui.status.textContent = text;
    ui.status.classList.toggle("error", isError);
  };

  function setFile(file) {
    if (!file) return;
    if (!file.type.startsWith("image/") && file.type !== "") {
      say(`${file.name} is not an image (${file.type}).`, true);
      return;
    }
    state.file = file;
    ui.name.textContent = file.name || "pasted image";
    ui.result.hidden = true;
    say("Ready: press Check.");
  }

  pickImages({ zone: ui.drop, input: ui.file, isActive: () => !$("guard-view").hidden, onFile: setFile });

  ui.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!state.file) { say("Choose an image first.", true); ui.drop.focus(); return; }
    const seq = ++state.seq;
    const form = new FormData();
    form.append("image", state.file, state.file.name || "image");
    if (ui.prompt.value.trim()) form.append("prompt", ui.prompt.value);
    if (ui.answer.value.trim()) form.append("answer", ui.answer.value);
    ui.go.disabled = true;
    say("Checking… (reading text in the image takes a second or two)");
    const started = performance.now();
    try {
      const analysis = await apiJson("/api/guard/analyze", { method: "POST", body: form });
      if (seq !== state.seq) return;
      show(analysis, state.file);
      say(`Checked in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    } catch (error) {
      if (seq === state.seq) say(error.message, true);
    } finally {
      if (seq === state.seq) ui.go.disabled = false;
    }
  });

  function show(analysis, file) {
    ui.verdict.textContent = VERDICTS[analysis.verdict] || analysis.verdict;
    ui.verdict.dataset.verdict = analysis.verdict;
    ui.reasons.replaceChildren(...analysis.reasons.map((reason) => {
      const li = document.createElement("li");
      li.textContent = reason;
      return li;
    }));

    const scan = analysis.injection;
    if (state.url) URL.revokeObjectURL(state.url);
    state.url = URL.createObjectURL(file);
    ui.image.src = state.url;
    // Boxes are in the image's own pixels (after EXIF rotation, as the browser shows it): an SVG
    // with that viewBox, stretched over the image, puts them in place at any display size.
    ui.boxes.setAttribute("viewBox", `0 0 ${scan.width || 1} ${scan.height || 1}`);
    ui.boxes.setAttribute("preserveAspectRatio", "none");
    ui.boxes.replaceChildren();
    ui.findings.replaceChildren();

    const findings = [...scan.findings].sort((a, b) => b.score - a.score);
    for (const f of findings) {
      if (f.box) {
        const [x0, y0, x1, y1] = f.box;
        const rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("x", x0);
        rect.setAttribute("y", y0);
        rect.setAttribute("width", Math.max(1, x1 - x0));
        rect.setAttribute("height", Math.max(1, y1 - y0));
        rect.setAttribute("class", f.flagged ? "flagged" : "other");
        ui.boxes.append(rect);
      }
      const row = ui.findings.insertRow();
      row.className = f.flagged ? "flagged" : "";
      const where = f.box ? `${f.source} at ${f.box.join(", ")}` : f.source;
      for (const value of [f.text, where, f.score.toFixed(2) + (f.flagged ? " (injection)" : ""),
        f.hidden.toFixed(2), f.techniques.join(", ")]) {
        row.insertCell().textContent = value;
      }
    }
    if (!findings.length) {
      const cell = ui.findings.insertRow().insertCell();
      cell.colSpan = 5;
      cell.textContent = "No text was found in the image, its metadata or QR codes.";
    }
    ui.result.hidden = false;
  }
}
