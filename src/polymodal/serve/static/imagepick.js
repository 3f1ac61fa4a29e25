// One way to hand the page an image: a drop zone that also opens the file picker (Enter, Space
// or the "choose a file" label), and pasting while the zone's view is shown.

export function pickImages({ zone, input, isActive, onFile }) {
  input.addEventListener("change", () => input.files[0] && onFile(input.files[0]));
  zone.addEventListener("keydown", (event) => {
    if (event.target === zone && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      input.click();
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "dragend"]) zone.addEventListener(name, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = [...(event.dataTransfer?.files || [])][0];
    if (file) onFile(file);
  });
  document.addEventListener("paste", (event) => {
    if (!isActive()) return;
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) onFile(file);
  });
}
