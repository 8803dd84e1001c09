// The event drawer: payload, result, last error and every attempt of one event, with Retry.

import { $, h } from "./dom.js";
import { badge } from "./feed.js";
import { clock, ms } from "./format.js";
import { sourceDetails } from "./source.js";
import { toast } from "./toast.js";

const REPLAYABLE = new Set(["failed", "completed"]);
const TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

// Pretty-printed JSON with coloured tokens; every token is a text node.
export function jsonBlock(value) {
  const text = JSON.stringify(value, null, 2);
  const pre = h("pre", { class: "json mono" });
  let at = 0;
  for (const match of text.matchAll(TOKEN)) {
    pre.append(text.slice(at, match.index));
    const [whole, string, colon, literal] = match;
    const kind = string ? (colon ? "key" : "string") : literal ? "literal" : "number";
    pre.append(h("span", { class: `j-${kind}`, text: string || whole }));
    if (colon) pre.append(colon);
    at = match.index + whole.length;
  }
  pre.append(text.slice(at));
  return pre;
}

function field(label, value, mono = false) {
  return h("div", { class: "field" }, h("dt", { text: label }), h("dd", { class: mono ? "mono" : "", text: value }));
}

function attemptItem(a) {
  return h(
    "li",
    { class: "attempt", data: { outcome: a.outcome } },
    h("div", { class: "attempt-head" }, h("strong", { text: `#${a.number}` }), badge(a.outcome), h("span", { class: "muted", text: `${ms(a.duration_ms)} · ${clock(a.started_at)}` })),
    a.error ? h("p", { class: "error-text mono", text: a.error }) : null,
    h("p", { class: "muted small mono", text: `worker ${a.worker}` }),
  );
}

export function mountDrawer({ api, onRetried, onTemplate, keyPrefix }) {
  const drawer = $("#drawer");
  const body = $("#drawer-body");
  const retryButton = $("#drawer-retry");
  let current = null;
  let loading = false;
  let stale = false;

  function render(event) {
    $("#drawer-title").textContent = event.type;
    $("#drawer-status").replaceChildren(badge(event.status));
    retryButton.disabled = !REPLAYABLE.has(event.status);
    retryButton.title = retryButton.disabled ? "Only failed or completed events can be retried" : "Queue this event again";
    const sections = [
      h(
        "dl",
        { class: "fields" },
        field("Id", event.id, true),
        field("Created", clock(event.created_at)),
        field("Updated", clock(event.updated_at)),
        field(event.status === "failed" ? "Failed" : "Completed", clock(event.completed_at)),
        field("Next run", ["scheduled", "retrying"].includes(event.status) ? clock(event.available_at) : "–"),
        field("Attempts", String(event.attempt_count)),
        h("div", { class: "field wide source-field" }, h("dt", { text: "Source" }), h("dd", {}, ...sourceDetails(event.source, keyPrefix))),
        event.idempotency_key ? field("Idempotency key", event.idempotency_key, true) : null,
      ),
      h("section", {}, h("h3", { text: "Payload" }), jsonBlock(event.payload)),
      event.last_error ? h("section", {}, h("h3", { text: "Last error" }), h("p", { class: "error-text mono", text: event.last_error })) : null,
      event.result ? h("section", {}, h("h3", { text: "Result" }), jsonBlock(event.result)) : null,
      h(
        "section",
        {},
        h("h3", { text: `Attempts (${event.attempts.length})` }),
        event.attempts.length ? h("ol", { class: "attempt-list" }, event.attempts.map(attemptItem)) : h("p", { class: "muted", text: "Not attempted yet." }),
      ),
    ];
    body.replaceChildren(...sections.filter(Boolean));
  }

  // One request at a time, always for the event shown; a change reported meanwhile (or
  // another event opened) is fetched as soon as the request in flight returns.
  async function load() {
    if (loading) {
      stale = true;
      return;
    }
    loading = true;
    try {
      do {
        stale = false;
        const id = current.id;
        const event = await api.get(`/api/v1/events/${id}`);
        if (current?.id === id) {
          current = event;
          render(event);
        }
      } while (stale && current);
    } finally {
      loading = false;
    }
  }

  function close() {
    drawer.hidden = true;
    current = null;
  }

  retryButton.addEventListener("click", async () => {
    if (!current) return;
    retryButton.disabled = true;
    try {
      await api.post(`/api/v1/events/${current.id}/retry`);
      toast("Retry queued", { detail: `${current.type} ${current.id}` });
      onRetried([current.id]);
      await load();
    } catch (error) {
      if (error.status !== 401) toast("Retry failed", { tone: "error", detail: error.message });
      retryButton.disabled = false;
    }
  });
  $("#drawer-close").addEventListener("click", close);
  $("#drawer-template").addEventListener("click", () => current && onTemplate(current));
  $("#drawer-copy").addEventListener("click", () => {
    if (!current) return;
    navigator.clipboard?.writeText(current.id).then(
      () => toast("Id copied", { detail: current.id }),
      () => toast("Copy failed", { tone: "error", detail: "The browser refused clipboard access" }),
    );
  });
  document.addEventListener("keydown", (e) => e.key === "Escape" && !drawer.hidden && close());

  return {
    async open(id) {
      current = { id };
      body.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
      $("#drawer-title").textContent = "Event";
      $("#drawer-status").replaceChildren();
      drawer.hidden = false;
      $("#drawer-close").focus();
      try {
        await load();
      } catch (error) {
        if (error.status !== 401) body.replaceChildren(h("p", { class: "error-text", text: error.message }));
      }
    },
    // Called with ids the stream reports as changed.
    changed(ids) {
      if (current?.id && !drawer.hidden && ids.includes(current.id)) load().catch(() => {});
    },
    close,
  };
}
