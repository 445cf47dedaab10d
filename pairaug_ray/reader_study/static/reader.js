// The reading page: fetch the next case, show it, time it, send the answer, repeat.
// Answers by click or key (shown on each button); window/level and zoom on the image.
"use strict";
(function () {
  const base = document.currentScript.dataset.base;
  const canvas = document.getElementById("image");
  const ctx = canvas.getContext("2d");
  let original = null;           // the image's grey values, as served
  let view = { zoom: 1, x: 0, y: 0, window: 255, level: 127.5 };
  let current = null, shownAt = 0, sending = false;

  function paint() {
    if (!original) return;
    const out = ctx.createImageData(original.width, original.height);
    const lo = view.level - view.window / 2, scale = 255 / Math.max(1, view.window);
    for (let i = 0; i < original.data.length; i += 4) {
      const v = Math.min(255, Math.max(0, (original.data[i] - lo) * scale));
      out.data[i] = out.data[i + 1] = out.data[i + 2] = v; out.data[i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    canvas.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  }

  function reset() { view = { zoom: 1, x: 0, y: 0, window: 255, level: 127.5 }; paint(); }

  async function loadImage(url) {
    const blob = await (await fetch(url, { credentials: "same-origin" })).blob();
    const bitmap = await createImageBitmap(blob);
    canvas.width = bitmap.width; canvas.height = bitmap.height;
    ctx.drawImage(bitmap, 0, 0);
    original = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
    reset();
  }

  async function next() {
    let c;
    try {
      const res = await fetch(base + "/next", { credentials: "same-origin" });
      if (!res.ok) throw new Error(String(res.status));
      c = await res.json();
    } catch (e) {
      // Nothing is lost: every answer given is saved; reloading opens the next unanswered case.
      document.getElementById("status").textContent = "The server could not be reached: reload the page to go on.";
      return;
    }
    if (c.finished) { window.location.reload(); return; }
    current = c;
    document.getElementById("progress").textContent = `case ${c.position} of ${c.total}`;
    document.getElementById("ask").textContent = c.question;
    const report = document.getElementById("report");
    report.hidden = !c.report; report.textContent = c.report || "";
    document.getElementById("viewer").hidden = !c.image;
    document.getElementById("viewer-hint").hidden = !c.image;
    if (c.image) await loadImage(c.image); else original = null;
    canvas.dataset.shown = c.image ? c.case_id : "";  // which case the canvas shows (tests wait on it)
    const box = document.getElementById("answers");
    box.replaceChildren(...c.answers.map((a) => {
      const b = document.createElement("button");
      b.type = "button"; b.dataset.answer = a.value; b.dataset.key = a.key;
      b.append(a.label); const k = document.createElement("kbd"); k.textContent = a.key.toUpperCase(); b.append(k);
      b.addEventListener("click", () => send(a.value));
      return b;
    }));
    document.getElementById("status").textContent = "";
    shownAt = performance.now();
  }

  async function send(answer) {
    if (!current || sending) return;
    sending = true;
    const seconds = (performance.now() - shownAt) / 1000;
    try {
      const res = await fetch(base + "/answer", {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ case_id: current.case_id, answer, seconds }),
      });
      if (res.ok || res.status === 409) { await next(); }
      else { document.getElementById("status").textContent = "Not saved: " + ((await res.json()).error || res.status); }
    } catch (e) {
      document.getElementById("status").textContent = "Not saved (the connection failed): answer again.";
    } finally { sending = false; }
  }

  document.addEventListener("keydown", (e) => {
    if (!current || e.ctrlKey || e.metaKey || e.altKey) return;
    const a = current.answers.find((x) => x.key === e.key.toLowerCase());
    if (a) { e.preventDefault(); send(a.value); }
  });

  let drag = null;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => {
    drag = { x: e.clientX, y: e.clientY, wl: e.button === 2 || e.shiftKey, start: { ...view } };
  });
  window.addEventListener("mouseup", () => { drag = null; });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.wl) {
      view.window = Math.min(512, Math.max(1, drag.start.window + dx));
      view.level = Math.min(255, Math.max(0, drag.start.level - dy));
    } else { view.x = drag.start.x + dx; view.y = drag.start.y + dy; }
    paint();
  });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    view.zoom = Math.min(8, Math.max(1, view.zoom * (e.deltaY < 0 ? 1.15 : 1 / 1.15)));
    if (view.zoom === 1) { view.x = 0; view.y = 0; }
    paint();
  }, { passive: false });
  canvas.addEventListener("dblclick", reset);

  next();
})();
