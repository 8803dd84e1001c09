// The live feed: the newest events, updated in place from the stream, with filters by status
// and type, search by id, paging to older events, and a pause that holds new arrivals.

import { $, $$, h } from "./dom.js";
import { ago, count, shortId, until } from "./format.js";
import { sourceChip } from "./source.js";

const PAGE = 50;
const MAX_ROWS = 250;
const PREVIEW_CHARS = 160;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const WAITING = new Set(["scheduled", "retrying"]);

export function badge(status) {
  return h("span", { class: "badge", data: { status }, text: status });
}

function preview(event) {
  if (event.preview !== undefined) return event.truncated ? `${event.preview}…` : event.preview;
  const text = JSON.stringify(event.payload);
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text;
}

function when(event) {
  if (WAITING.has(event.status)) return `next ${until(event.available_at)}`;
  return ago(event.created_at);
}

export function mountFeed({ api, onOpen }) {
  const list = $("#feed-list");
  const empty = $("#feed-empty");
  const more = $("#feed-more");
  const heldButton = $("#feed-held");
  const pauseButton = $("#feed-pause");
  const rows = new Map();
  const filters = { status: "", type: "", query: "" };
  let nextCursor = null;
  let paused = false;
  let held = [];
  let generation = 0;

  const matches = (e) =>
    (!filters.status || e.status === filters.status) &&
    (!filters.type || e.type === filters.type) &&
    (!filters.query || e.id.toLowerCase().includes(filters.query.toLowerCase()));

  function render(event) {
    return h(
      "button",
      { type: "button", class: "row-main", title: `Open ${event.type} ${event.id}`, onclick: () => onOpen(event.id) },
      badge(event.status),
      h("span", { class: "type", text: event.type }),
      h("span", { class: "id mono", text: shortId(event.id) }),
      h("span", { class: "preview mono", text: preview(event) }),
      sourceChip(event.source),
      h("span", { class: "attempts", title: "Attempts", text: event.attempt_count ? `×${event.attempt_count}` : "" }),
      h("time", { class: "age", datetime: event.created_at, text: when(event) }),
    );
  }

  const lastId = () => list.lastElementChild?.dataset.id;

  function refreshChrome() {
    empty.hidden = rows.size > 0;
    empty.textContent = filters.status || filters.type || filters.query ? "No events match these filters." : "No events yet. Send one with the injector.";
    more.hidden = !nextCursor;
    $("#feed-count").textContent = `${count(rows.size)} shown`;
  }

  function remove(id) {
    rows.get(id)?.el.remove();
    rows.delete(id);
  }

  function place(event, { flash }) {
    const el = h("li", { class: flash ? "row enter" : "row", data: { id: event.id, status: event.status } }, render(event));
    // Rows stay sorted newest first; UUIDv7 ids sort by creation time.
    const before = [...list.children].find((li) => li.dataset.id < event.id);
    list.insertBefore(el, before || null);
    rows.set(event.id, { event, el });
  }

  function upsert(event, fromStream) {
    const known = rows.get(event.id);
    if (known) {
      const merged = { ...known.event, ...event };
      if (!matches(merged)) return remove(event.id);
      const changed = known.event.status !== merged.status;
      known.event = merged;
      known.el.dataset.status = merged.status;
      known.el.replaceChildren(render(merged));
      if (changed) {
        known.el.classList.remove("changed");
        void known.el.offsetWidth; // restart the highlight animation
        known.el.classList.add("changed");
      }
      return;
    }
    const last = lastId();
    // Older than the oldest row shown while older pages exist: it belongs to a later page.
    if (!fromStream || !matches(event) || (nextCursor && last && event.id < last)) return;
    place(event, { flash: true });
  }

  function trim() {
    while (rows.size > MAX_ROWS) {
      const last = lastId();
      remove(last);
      nextCursor = last;
    }
  }

  function query(cursor) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (filters.status) params.set("status", filters.status);
    if (filters.type) params.set("type", filters.type);
    if (cursor) params.set("cursor", cursor);
    return api.get(`/api/v1/events?${params}`);
  }

  async function reload() {
    const mine = ++generation;
    let items = [];
    let cursor = null;
    try {
      if (UUID.test(filters.query)) {
        items = [await api.get(`/api/v1/events/${filters.query}`)].filter(matches);
      } else {
        ({ items, next_cursor: cursor } = await query(null));
      }
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    if (mine !== generation) return;
    for (const id of [...rows.keys()]) remove(id);
    nextCursor = cursor;
    for (const item of items.filter(matches)) place(item, { flash: false });
    refreshChrome();
  }

  async function loadOlder() {
    more.disabled = true;
    try {
      const { items, next_cursor: cursor } = await query(nextCursor);
      for (const item of items) if (matches(item) && !rows.has(item.id)) place(item, { flash: false });
      nextCursor = cursor;
      refreshChrome();
    } finally {
      more.disabled = false;
    }
  }

  function setPaused(value) {
    paused = value;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      const release = held;
      held = [];
      for (const event of release) upsert(event, true);
      trim();
      refreshChrome();
    }
    heldButton.hidden = true;
  }

  let typing = 0;
  const onFilter = () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      filters.type = $("#filter-type").value.trim();
      filters.query = $("#filter-id").value.trim();
      reload().catch(() => {});
    }, 250);
  };
  $("#filter-type").addEventListener("input", onFilter);
  $("#filter-id").addEventListener("input", onFilter);
  for (const chip of $$("#status-chips [data-status]")) {
    chip.addEventListener("click", () => {
      filters.status = chip.dataset.status;
      for (const other of $$("#status-chips [data-status]")) other.setAttribute("aria-pressed", String(other === chip));
      reload().catch(() => {});
    });
  }
  more.addEventListener("click", () => loadOlder().catch(() => {}));
  pauseButton.addEventListener("click", () => setPaused(!paused));
  heldButton.addEventListener("click", () => setPaused(false));

  return {
    reload,
    // Newest last, so each insertion lands above the previous one.
    apply(events) {
      for (const event of [...events].reverse()) {
        if (paused && !rows.has(event.id)) held.push(event);
        else upsert(event, true);
      }
      if (paused && held.length) {
        heldButton.hidden = false;
        heldButton.textContent = `${count(held.length)} new · show`;
      }
      trim();
      refreshChrome();
    },
    markQueued(ids) {
      for (const id of ids) if (rows.has(id)) upsert({ id, status: "queued" }, true);
      refreshChrome();
    },
    setCounts(counts) {
      for (const chip of $$("#status-chips [data-status]")) {
        const n = chip.dataset.status ? counts[chip.dataset.status] || 0 : Object.values(counts).reduce((a, b) => a + b, 0);
        $(".n", chip).textContent = count(n);
      }
    },
    tick() {
      for (const { event, el } of rows.values()) $(".age", el).textContent = when(event);
    },
    clear() {
      generation++;
      for (const id of [...rows.keys()]) remove(id);
      held = [];
      nextCursor = null;
      refreshChrome();
    },
  };
}
