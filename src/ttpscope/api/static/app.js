// ttpscope web app: small progressive enhancements; every page works without this file except live progress.
"use strict";

// The write token: taken once from the address fragment (#token=...), kept for this browser tab only.
(function keepToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("ttpscope-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

function token() { return sessionStorage.getItem("ttpscope-token") || ""; }

// Filter rows of a list table as you type.
document.addEventListener("input", (ev) => {
  const box = ev.target.closest("[data-filter]");
  if (!box) return;
  const q = box.value.trim().toLowerCase();
  document.querySelectorAll(box.dataset.filter + " tbody tr").forEach((tr) => {
    tr.hidden = q && !tr.textContent.toLowerCase().includes(q);
  });
});

// Upload page: send the evidence with the bearer token, then follow the job.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  if (form) {
    const tokenInput = document.getElementById("token");
    if (tokenInput && !tokenInput.value) tokenInput.value = token();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const status = document.getElementById("upload-status");
      const button = form.querySelector("button[type=submit]");
      const tok = tokenInput.value.trim();
      sessionStorage.setItem("ttpscope-token", tok);
      const body = new FormData(form);
      body.delete("token");
      button.disabled = true;
      status.className = "notice";
      status.textContent = "Uploading…";
      try {
        const res = await fetch("/api/cases", { method: "POST", body, headers: { Authorization: "Bearer " + tok } });
        const data = await res.json().catch(() => ({ detail: res.statusText }));
        if (!res.ok) throw new Error(data.detail || res.statusText);
        location.assign("/jobs/" + encodeURIComponent(data.job.id));
      } catch (err) {
        status.className = "error";
        status.textContent = "Upload refused: " + err.message;
        button.disabled = false;
      }
    });
  }

  // "Show only the observed techniques": hides unmarked cells of a matrix (the full matrix without JS).
  document.querySelectorAll("[data-only-marked]").forEach((box) => {
    // showing only the observed ones, the marked sub-techniques are opened too: they are the evidence
    const apply = () => document.querySelectorAll(box.dataset.onlyMarked).forEach((m) => {
      m.classList.toggle("only-marked", box.checked);
      m.querySelectorAll(".cell details").forEach((d) => { d.open = box.checked && !!d.querySelector(".sub.marked"); });
    });
    box.addEventListener("change", apply);
    apply();
  });

  // "Show sub-techniques": opens (or closes) every collapsed sub-technique list of the matrix that follows.
  document.querySelectorAll("[data-expand-subs]").forEach((box) => box.addEventListener("change", () => {
    const grid = box.closest(".matrix-tools").nextElementSibling;
    if (grid) grid.querySelectorAll(".cell details").forEach((d) => { d.open = box.checked; });
  }));

  // Compare: "Add a side" shows the next hidden side (up to six); the button goes when all are shown.
  document.querySelectorAll("[data-add-side]").forEach((button) => {
    const form = button.closest("form");
    const refresh = () => { button.hidden = !form.querySelector("fieldset.side[hidden]"); };
    button.addEventListener("click", () => {
      const next = form.querySelector("fieldset.side[hidden]");
      if (next) { next.hidden = false; next.querySelector("input").focus(); }
      refresh();
    });
    refresh();
  });

  const job = document.getElementById("job");
  if (job) followJob(job.dataset.id);

  // Review forms of the case page: one decision (or a new observation) per form, posted with the token.
  document.querySelectorAll("form[data-review]").forEach((f) => f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const tok = token() || prompt("Write token (printed when the server started):") || "";
    sessionStorage.setItem("ttpscope-token", tok);
    const v = (name) => (f.elements[name] ? f.elements[name].value.trim() : "");
    const body = f.dataset.add
      ? { action: "add", technique: v("technique"), evidence: v("evidence"), host: v("host") || null, by: v("by") || null }
      : { action: v("action"), ids: [f.dataset.target], by: v("by") || null, note: v("note") };
    const status = f.querySelector(".review-state");
    const res = await fetch(f.dataset.review, { method: "POST", body: JSON.stringify(body),
      headers: { Authorization: "Bearer " + tok, "Content-Type": "application/json" } });
    if (res.ok) { location.reload(); return; }
    const detail = (await res.json().catch(() => ({}))).detail || res.statusText;
    if (status) status.textContent = "Refused: " + detail;
  }));

  document.querySelectorAll("form[data-delete]").forEach((f) => f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!confirm("Delete this case?")) return;
    const tok = token() || prompt("Write token (printed when the server started):") || "";
    sessionStorage.setItem("ttpscope-token", tok);
    const res = await fetch(f.dataset.delete, { method: "DELETE", headers: { Authorization: "Bearer " + tok } });
    if (res.ok) location.assign("/cases");
    else alert("Delete refused: " + ((await res.json().catch(() => ({}))).detail || res.statusText));
  }));
});

async function followJob(id) {
  const bar = document.getElementById("job-progress");
  const stage = document.getElementById("job-stage");
  const log = document.getElementById("job-log");
  for (;;) {
    let data;
    try {
      const res = await fetch("/api/jobs/" + encodeURIComponent(id));
      data = await res.json();
      if (!res.ok) throw new Error(data.detail || res.statusText);
    } catch (err) {
      stage.textContent = "Lost the job: " + err.message;
      return;
    }
    stage.textContent = data.state + ": " + data.stage;
    if (data.fraction !== null && data.fraction !== undefined) bar.value = data.fraction;
    else bar.removeAttribute("value");
    log.textContent = data.log.join("\n");
    if (data.state === "done") {
      location.assign("/cases/" + encodeURIComponent(data.result.case_id));
      return;
    }
    if (data.state === "failed") {
      stage.className = "error";
      stage.textContent = "Failed: " + data.error;
      return;
    }
    await new Promise((r) => setTimeout(r, 700));
  }
}
