// The source folder of a submit form (a run, a sweep, a pipeline): a form with
// data-plan-url and the hidden fields of runs.forms.SourceFolderForm.
//
// Browsers send a chosen folder's files by bare name, so on submit each file is
// renamed to its index and source_paths carries the paths in that order. Where the
// page can hash (crypto.subtle: https, or http://127.0.0.1), it hashes the folder,
// asks the server which files the workspace does not hold yet, and sends only those,
// with the signed plan of the answer; the hashes stand for the others. .git/ is never
// sent, only the few small files that name its repository, branch and commit. With an
// entry script field, the folder's Python files are offered as entry scripts.
(function () {
  "use strict";

  const strip = (p) => (p.includes("/") ? p.slice(p.indexOf("/") + 1) : p);
  const pathOf = (f) => f.webkitRelativePath || f.name;

  async function sha256(file) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // HEAD, config and the branch's ref (loose, else in packed-refs under 1 MB).
  async function gitFiles(files) {
    const byName = new Map(files.map((f) => [strip(pathOf(f)), f]));
    const found = {};
    for (const name of ["HEAD", "config", "packed-refs"]) {
      const file = byName.get(`.git/${name}`);
      if (file && file.size < 1 << 20) found[name] = await file.text();
    }
    const head = (found.HEAD || "").trim();
    const branch = head.startsWith("ref: refs/heads/") ? head.slice(5) : "";
    const ref = branch ? byName.get(`.git/${branch}`) : null;
    if (ref) found[branch] = await ref.text();
    return found.HEAD ? found : null;
  }

  function setUp(form) {
    const field = (name) => form.elements.namedItem(name);
    const folder = field("source_folder");
    const entry = field("entry_script");
    const scripts = entry ? entry.list : null;
    const summary = form.querySelector("[data-role=folder-summary]");
    const token = field("csrfmiddlewaretoken").value;
    let plan = null; // a promise of {files, hashes, missing, signed} for the folder chosen now

    async function ask(body) {
      const response = await fetch(form.dataset.planUrl, {
        method: "POST",
        headers: {"Content-Type": "application/json", "X-CSRFToken": token},
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        const answer = await response.json().catch(() => ({}));
        throw new Error(answer.error || `the server answered ${response.status}`);
      }
      return response.json();
    }

    // Which files to send: those the ignore rules keep and the workspace does not hold.
    async function planFolder(files, chosen) {
      const names = files.map((f) => strip(pathOf(f)));
      const ignore = {};
      for (const name of [".amlignore", ".gitignore"]) {
        const at = names.indexOf(name);
        if (at >= 0) ignore[name] = await files[at].text();
      }
      const ignored = new Set((await ask({paths: names, ignore: ignore})).ignored);
      const kept = files.filter((f, i) => !ignored.has(names[i]));
      const found = [];
      for (const [i, file] of kept.entries()) {
        if (i % 50 === 0) summary.textContent = `${chosen} Hashing ${i.toLocaleString()} of ${kept.length.toLocaleString()} files…`;
        found.push(await sha256(file));
      }
      const answer = await ask({sha256: found});
      const missing = new Set(answer.missing);
      const changed = found.filter((h) => missing.has(h)).length;
      const left = ignored.size ? ` ${ignored.size.toLocaleString()} left out by ${Object.keys(ignore)[0]};` : "";
      summary.textContent = `${chosen}${left} ${changed.toLocaleString()} new or changed: only those are uploaded.`;
      return {files: kept, hashes: found, missing: missing, signed: answer.plan};
    }

    function update() {
      const files = Array.from(folder.files);
      const names = files.map(pathOf);
      const python = names.map(strip).filter((p) => p.endsWith(".py")).sort();
      if (scripts) {
        scripts.replaceChildren(...python.map((p) => Object.assign(document.createElement("option"), {value: p})));
        if (!entry.value && python.length) entry.value = python.includes("train.py") ? "train.py" : python[0];
      }
      const chosen = names.length ? `${names.length} files chosen; Python files: ${python.join(", ") || "none"}.` : "";
      summary.textContent = chosen;
      plan = null;
      if (files.length && window.crypto && crypto.subtle) {
        plan = planFolder(files, chosen).catch((error) => {
          summary.textContent = `${chosen} Every file is uploaded (${error.message}).`;
          return null;
        });
      }
    }

    form.addEventListener("submit", async function (event) {
      if (!folder.files.length || form.dataset.ready) return;
      event.preventDefault();
      const known = plan ? await plan : null;
      const files = known ? known.files : Array.from(folder.files);
      field("source_paths").value = files.map(pathOf).join("\n");
      field("source_hashes").value = known ? known.hashes.join("\n") : "";
      field("source_plan").value = known ? known.signed : "";
      const facts = await gitFiles(Array.from(folder.files));
      field("source_git").value = facts ? JSON.stringify(facts) : "";
      const numbered = new DataTransfer();
      files.forEach((f, i) => {
        if (!known || known.missing.has(known.hashes[i])) {
          numbered.items.add(new File([f], String(i), {type: f.type, lastModified: f.lastModified}));
        }
      });
      folder.files = numbered.files;
      form.dataset.ready = "1";
      // After this submit event is over: a form ignores a submit asked for during one.
      setTimeout(() => form.requestSubmit());
    });
    folder.addEventListener("change", update);
    update();
  }

  document.querySelectorAll("form[data-plan-url]").forEach(setUp);
})();
