// postergenre's page: posters in, one result panel per poster as each analysis finishes.
// Plain DOM, no framework and no build step; every text from the server goes through
// textContent (never innerHTML), so a file name or message cannot inject markup.
"use strict";

(() => {
  const MAX_IN_FLIGHT = 2; // requests at once: results stream in, the server's queue stays short
  const SHOWN_GENRES = 6; // genre bars shown before "all genres"
  const MAX_RETRIES = 30;

  const KIND_WORDS = {
    not_image: "Not an image",
    corrupt: "Damaged image",
    empty: "Empty file",
    too_large: "Too large",
    too_small: "Too small",
    too_many_files: "Too many files",
    wrong_field: "Bad upload",
    bad_parameter: "Bad option",
    busy: "Server busy",
    not_ready: "Model not loaded",
    timeout: "Took too long",
    network: "Server unreachable",
    internal: "Server error",
  };

  const statusEl = document.getElementById("status");
  const input = document.getElementById("files");
  const drop = document.getElementById("drop");
  const results = document.getElementById("results");
  const template = document.getElementById("poster-template");
  const queue = [];
  let ready = false;
  let inFlight = 0;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pct(p) {
    if (p > 0 && p < 0.005) return "<1%";
    if (p > 0.995 && p < 1) return ">99%";
    return `${Math.round(p * 100)}%`;
  }

  // Tuned thresholds can lie outside [0, 1]: a genre always (or never) predicted.
  function thresholdWords(t) {
    if (t <= 0) return "0% (always predicted)";
    if (t > 1) return "over 100% (never predicted)";
    return pct(t);
  }

  function setStatus(text, state) {
    statusEl.textContent = text;
    statusEl.dataset.state = state;
  }

  // -- readiness -----------------------------------------------------------------------
  async function pollHealth() {
    try {
      const response = await fetch("/api/health", { cache: "no-store" });
      const health = await response.json();
      if (health.status === "ready") {
        onReady();
        return;
      }
      if (health.status === "failed") {
        const hint = health.hint ? ` (hint: ${health.hint})` : "";
        setStatus(`The model could not be loaded: ${health.error}${hint}`, "failed");
        return;
      }
      setStatus("Loading the model\u2026 posters you add now are analysed once it is ready.", "loading");
    } catch (err) {
      setStatus("Cannot reach the server; retrying\u2026", "loading");
    }
    setTimeout(pollHealth, 1000);
  }

  async function onReady() {
    ready = true;
    setStatus("Ready: choose or drop posters.", "ready");
    pump();
    try {
      const info = await (await fetch("/api/model")).json();
      const name = info.name ? `${info.name}, ` : "";
      document.getElementById("model-name").textContent = `${name}${info.genres.length} genres`;
      showPrior(info);
    } catch (err) {
      /* the footer line is optional */
    }
  }

  // A server started with --prior: say which genre mix the probabilities are for.
  function showPrior(info) {
    const prior = info.prior;
    const note = document.getElementById("prior-note");
    if (!prior || !prior.file || !note) return;
    const given = prior.given || Object.keys(prior.shares);
    const shares = given.map((g) => `${g} ${Math.round(100 * prior.shares[g])}%`).join(", ");
    const rest = given.length < info.genres.length
      ? "; the other genres keep the model's reference shares" : "";
    note.textContent = `Probabilities are adapted to this catalogue's genre mix: ${shares}${rest}.`;
    note.hidden = false;
  }

  // -- the queue of posters --------------------------------------------------------------
  function currentOptions() {
    const params = new URLSearchParams();
    params.set("explain", document.getElementById("explain").checked ? "true" : "false");
    params.set("threshold", document.getElementById("threshold").value);
    const topK = document.getElementById("topk").value;
    if (topK) params.set("top_k", topK);
    return params;
  }

  function addFiles(files) {
    const params = currentOptions();
    for (const file of files) {
      const panel = newPanel(file);
      results.prepend(panel);
      queue.push({ file, panel, params });
    }
    if (!ready) setStatus("Loading the model\u2026 your posters will be analysed once it is ready.", "loading");
    pump();
  }

  function pump() {
    while (ready && inFlight < MAX_IN_FLIGHT && queue.length > 0) {
      const job = queue.shift();
      inFlight += 1;
      analyse(job).finally(() => {
        inFlight -= 1;
        pump();
      });
    }
  }

  function newPanel(file) {
    const panel = template.content.firstElementChild.cloneNode(true);
    panel.querySelector(".name").textContent = file.name;
    const img = panel.querySelector(".thumb");
    img.alt = `Poster: ${file.name}`;
    img.addEventListener("error", () => {
      img.replaceWith(el("div", "no-thumb", "no preview"));
    });
    img.src = URL.createObjectURL(file);
    return panel;
  }

  function setPanelState(panel, state, text) {
    panel.dataset.state = state;
    panel.querySelector(".state").textContent = text;
  }

  function sleep(seconds) {
    return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }

  async function post(url, file, field) {
    const form = new FormData();
    form.append(field, file, file.name);
    return fetch(url, { method: "POST", body: form });
  }

  async function analyse(job) {
    setPanelState(job.panel, "running", "Analysing\u2026");
    for (let attempt = 0; ; attempt += 1) {
      let response;
      let body;
      try {
        response = await post(`/api/analyze?${job.params}`, job.file, "files");
        body = await response.json();
      } catch (err) {
        showError(job.panel, {
          error: `could not reach the server (${err.message})`,
          kind: "network",
          hint: "check that postergenre serve is still running",
        });
        return;
      }
      const retryable = response.status === 503 && (body.kind === "busy" || body.kind === "not_ready");
      if (retryable && attempt < MAX_RETRIES) {
        setPanelState(job.panel, "running", "Server busy, waiting\u2026");
        await sleep(Number(response.headers.get("Retry-After")) || 1);
        continue;
      }
      const result = body.results ? body.results[0] : body;
      if (!result || result.error) {
        showError(job.panel, result || body);
      } else {
        render(job, result);
      }
      return;
    }
  }

  // -- rendering -------------------------------------------------------------------------
  function showError(panel, err) {
    setPanelState(panel, "error", "Could not be analysed");
    const box = panel.querySelector(".result");
    box.replaceChildren();
    const line = el("p", "error");
    line.setAttribute("role", "alert");
    line.append(el("strong", "kind", `${KIND_WORDS[err.kind] || err.kind}: `));
    line.append(el("span", "message", err.error));
    if (err.hint) line.append(" ", el("span", "hint", `Hint: ${err.hint}`));
    box.append(line);
  }

  function render(job, r) {
    const panel = job.panel;
    const src = r.source_size || r.size;
    const read = src[0] === r.size[0] && src[1] === r.size[1] ? "" : `, read at ${r.size[0]}\u00d7${r.size[1]}`;
    setPanelState(panel, "done", `${src[0]}\u00d7${src[1]} pixels${read}`);
    const box = panel.querySelector(".result");
    box.replaceChildren();

    const predicted = el("p", "predicted");
    predicted.append("Predicted: ");
    r.predicted.forEach((genre, i) => {
      if (i > 0) predicted.append(", ");
      predicted.append(el("strong", "genre-name", genre));
    });
    box.append(predicted);

    const genres = Object.keys(r.probabilities);
    const bars = el("ol", "bars");
    bars.setAttribute("aria-label", "Genre probabilities, most probable first");
    genres.slice(0, SHOWN_GENRES).forEach((g) => bars.append(barRow(g, r)));
    box.append(bars);
    if (genres.length > SHOWN_GENRES) {
      const more = el("details", "more-genres");
      more.append(el("summary", "", `All ${genres.length} genres`));
      const rest = el("ol", "bars");
      rest.start = SHOWN_GENRES + 1;
      genres.slice(SHOWN_GENRES).forEach((g) => rest.append(barRow(g, r)));
      more.append(rest);
      box.append(more);
    }
    box.append(el("p", "legend", "The red mark on each bar is the genre's decision threshold."));

    for (const e of Object.values(r.explanations || {})) box.append(explanation(e));
    box.append(cardControls(job));
  }

  function barRow(genre, r) {
    const p = r.probabilities[genre];
    const t = r.thresholds[genre];
    const isPredicted = r.predicted.includes(genre);
    const row = el("li", isPredicted ? "bar predicted" : "bar");
    row.append(el("span", "genre", genre));
    const track = el("span", "track");
    track.setAttribute("role", "img");
    track.setAttribute(
      "aria-label",
      `${genre} ${pct(p)}, threshold ${thresholdWords(t)}${isPredicted ? ", predicted" : ""}`,
    );
    const fill = el("span", "fill");
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    const mark = el("span", "threshold");
    mark.style.left = `${(Math.min(1, Math.max(0, t)) * 100).toFixed(1)}%`;
    mark.title = `threshold ${thresholdWords(t)}`;
    track.append(fill, mark);
    row.append(track, el("span", "pct", pct(p)));
    return row;
  }

  // A cue's effect: the genre's probability with the cue minus without it, in points.
  function points(effect) {
    const v = effect * 100;
    const digits = Math.abs(v) < 10 ? 1 : 0;
    return `${v >= 0 ? "+" : "\u2212"}${Math.abs(v).toFixed(digits)} pts`;
  }

  function explanation(e) {
    // Plain words and percentage points; the exact additive log-odds stay in the API's JSON.
    const section = el("section", "why");
    const title = el("h3", "", `Why ${e.genre}? ${pct(e.probability)} `);
    title.append(el("span", "muted", `(threshold ${thresholdWords(e.threshold)})`));
    section.append(title);
    const table = el("table", "cues");
    table.append(
      el("caption", "visually-hidden", `Cues behind ${e.genre}: how much each raises or lowers it`),
    );
    const head = el("thead");
    const headRow = el("tr");
    headRow.append(el("th", "", "cue"), el("th", "num", "effect"));
    head.append(headRow);
    const body = el("tbody");
    const scale = Math.max(0.02, ...e.cues.map((c) => Math.abs(c.effect)));
    const base = el("tr", "cue base");
    base.append(el("td", "cue-text", "a typical poster"), el("td", "num", pct(e.base_probability)));
    body.append(base);
    for (const cue of e.cues) {
      const verb = cue.effect >= 0 ? "raises" : "lowers";
      body.append(cueRow(`${cue.text} (${verb} it)`, cue.effect, cue.effect >= 0 ? "raise" : "lower", scale));
    }
    if (e.other && e.other.n_cues > 0) {
      body.append(cueRow(`other cues (${e.other.n_cues} together)`, e.other.effect, "other"));
    }
    const total = el("tr", "cue total");
    total.append(el("td", "cue-text", `${e.genre} for this poster`), el("td", "num", pct(e.probability)));
    body.append(total);
    table.append(head, body);
    section.append(table);
    return section;
  }

  function cueRow(text, effect, kind, scale) {
    const row = el("tr", `cue ${kind}`);
    const label = el("td", "cue-text");
    if (scale) {
      const bar = el("span", "cue-bar");
      bar.style.width = `${Math.min(100, (Math.abs(effect) / scale) * 100).toFixed(0)}%`;
      bar.setAttribute("aria-hidden", "true");
      label.append(bar);
    }
    label.append(el("span", "", text));
    row.append(label, el("td", "num", points(effect)));
    return row;
  }

  function cardControls(job) {
    const wrap = el("div", "card-controls");
    const button = el("button", "button secondary", "Show the card");
    button.type = "button";
    button.setAttribute("aria-expanded", "false");
    const figure = el("figure", "card");
    figure.hidden = true;
    button.addEventListener("click", async () => {
      if (!figure.hidden) {
        figure.hidden = true;
        button.textContent = "Show the card";
        button.setAttribute("aria-expanded", "false");
        return;
      }
      if (!figure.firstChild) {
        button.disabled = true;
        button.textContent = "Drawing the card\u2026";
        try {
          const params = new URLSearchParams(job.params);
          params.delete("explain");
          const response = await post(`/api/card?${params}`, job.file, "file");
          if (!response.ok) {
            const err = await response.json();
            figure.append(el("p", "error", `${err.error}${err.hint ? ` (hint: ${err.hint})` : ""}`));
          } else {
            const url = URL.createObjectURL(await response.blob());
            const img = el("img");
            img.src = url;
            img.alt = `Analysis card of ${job.file.name}`;
            const link = el("a", "", "Download the card (PNG)");
            link.href = url;
            link.download = `${job.file.name.replace(/\.[^.]*$/, "")}-card.png`;
            const caption = el("figcaption");
            caption.append(link);
            figure.append(img, caption);
          }
        } catch (err) {
          figure.append(el("p", "error", `could not reach the server (${err.message})`));
        }
        button.disabled = false;
      }
      figure.hidden = false;
      button.textContent = "Hide the card";
      button.setAttribute("aria-expanded", "true");
    });
    wrap.append(button, figure);
    return wrap;
  }

  // -- input -----------------------------------------------------------------------------
  input.addEventListener("change", () => {
    addFiles(Array.from(input.files));
    input.value = ""; // the same file can be chosen again
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(Array.from(event.dataTransfer.files));
  });
  // A poster dropped next to the box must not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  pollHealth();
})();
