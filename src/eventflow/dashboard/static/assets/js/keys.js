// The Keys panel: create an API key (its secret shown once, then gone from the page), list the
// account's keys with when each was last used, and revoke one after a confirmation.

import { $, h } from "./dom.js";
import { ago, clock } from "./format.js";
import { toast } from "./toast.js";

const MAX_NAME = 100;
const CONTROL = /[\u0000-\u001f\u007f]/; // what the API refuses in a name
const SCOPES = { ingest: "Sends events", read: "Reads events and stats" };
// A burst of events sent with keys refreshes "last used" once, not once per event.
const USE_REFRESH_MS = 5000;

function when(iso, never) {
  return iso ? h("time", { datetime: iso, title: clock(iso), text: ago(iso) }) : h("span", { text: never });
}

export function mountKeys({ api }) {
  const form = $("#key-form");
  const name = form.elements.name;
  const problem = $("#key-name-error");
  const slot = $("#key-secret");
  const list = $("#key-list");
  const dialog = $("#revoke-confirm");
  let keys = [];
  let generation = 0;
  let revoking = null;
  let refreshTimer = 0;

  function fieldError(message) {
    problem.textContent = message;
    name.setAttribute("aria-invalid", message ? "true" : "false");
  }

  function item(key) {
    const revoked = Boolean(key.revoked_at);
    return h(
      "li",
      { class: "key", data: { id: key.id, revoked: revoked ? "true" : "false" } },
      h(
        "div",
        { class: "key-head" },
        h("strong", { class: "key-name", title: key.name, text: key.name }),
        h("span", { class: "scope", data: { scope: key.scope }, title: SCOPES[key.scope] || "", text: key.scope }),
        revoked ? h("span", { class: "revoked", text: "revoked" }) : null,
      ),
      h("p", { class: "key-prefix mono", text: `${key.prefix}…` }),
      h(
        "p",
        { class: "key-times" },
        h("span", {}, "Created ", when(key.created_at, "–")),
        revoked ? h("span", {}, "Revoked ", when(key.revoked_at, "–")) : h("span", { class: "last-used" }, "Last used ", when(key.last_used_at, "never")),
      ),
      revoked
        ? null
        : h("button", { type: "button", class: "btn danger small key-revoke", "aria-label": `Revoke key ${key.name}`, text: "Revoke", onclick: () => confirmRevoke(key) }),
    );
  }

  // A refresh (say of "last used") must not take the focus from a keyboard user's Revoke.
  function render() {
    const focused = list.contains(document.activeElement) ? document.activeElement.closest("[data-id]")?.dataset.id : null;
    list.replaceChildren(...keys.map(item));
    $("#keys-empty").hidden = keys.length > 0;
    if (focused) list.querySelector(`[data-id="${CSS.escape(focused)}"] .key-revoke`)?.focus();
  }

  async function reload() {
    const mine = ++generation;
    const { items } = await api.get("/api/v1/keys");
    if (mine !== generation) return;
    keys = items;
    render();
  }

  const reloadQuietly = () => reload().catch((error) => error.status !== 401 && toast("Could not load keys", { tone: "error", detail: error.message }));

  // The secret lives only in this box's text: nothing else keeps it (no variable, no storage),
  // and "Done" removes the box, so after that the page holds no copy of it.
  function showSecret({ name: keyName, key }) {
    const value = h("code", { class: "secret-value mono", id: "key-secret-value", text: key });
    const copy = () => {
      const text = value.textContent;
      const selectIt = () => {
        getSelection().selectAllChildren(value);
        toast("Selected: press Ctrl+C to copy", { tone: "info", detail: "The browser did not allow copying from the page" });
      };
      if (!navigator.clipboard?.writeText) return selectIt();
      navigator.clipboard.writeText(text).then(() => toast("Key copied", { detail: `${keyName}: paste it where your app keeps secrets` }), selectIt);
    };
    const box = h(
      "section",
      { class: "key-secret", tabindex: "-1", "aria-labelledby": "key-secret-title", "aria-describedby": "key-secret-note" },
      h("h3", { id: "key-secret-title", text: `New key “${keyName}”` }),
      h("p", { id: "key-secret-note", class: "key-secret-note", text: "Copy this secret now: you will not see it again. Anyone holding it can act with this key's scope." }),
      value,
      h(
        "div",
        { class: "key-secret-actions" },
        h("button", { type: "button", class: "btn primary small", text: "Copy", onclick: copy }),
        h("button", { type: "button", class: "btn ghost small", text: "Done", onclick: hideSecret }),
      ),
    );
    slot.replaceChildren(box);
    box.focus();
  }

  function hideSecret() {
    const hadFocus = slot.contains(document.activeElement);
    if (slot.contains(getSelection().anchorNode)) getSelection().removeAllRanges();
    slot.replaceChildren();
    if (hadFocus) name.focus();
  }

  async function create(event) {
    event.preventDefault();
    const wanted = name.value.trim();
    if (!wanted) return fieldError("Give the key a name, like the app that will use it"), name.focus();
    if ([...wanted].length > MAX_NAME) return fieldError(`A name is at most ${MAX_NAME} characters`), name.focus();
    if (CONTROL.test(wanted)) return fieldError("A name cannot hold tabs or other control characters"), name.focus();
    fieldError("");
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      showSecret(await api.post("/api/v1/keys", { name: wanted, scope: form.elements.scope.value }));
    } catch (error) {
      if (error.status === 401) return;
      const invalid = (error.problem?.errors || []).find((e) => e.loc?.includes("name"));
      if (invalid) fieldError(invalid.msg);
      return toast("Key not created", { tone: "error", detail: error.message });
    } finally {
      button.disabled = false;
    }
    form.reset();
    await reloadQuietly();
  }

  function confirmRevoke(key) {
    revoking = key;
    $("#revoke-text").textContent = `Apps using “${key.name}” (${key.prefix}…) are refused from now on. This cannot be undone.`;
    dialog.returnValue = ""; // a cancel by Escape would otherwise keep the last answer
    dialog.showModal();
  }

  // A dialog's "close" event comes a task after it closes, and a browser busy with input may run
  // it after the dialog has been opened again: a late close of a cancel must leave alone the key
  // the dialog now asks about. Only a "yes" takes the key.
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "yes" || !revoking) return;
    const key = revoking;
    revoking = null;
    try {
      await api.delete(`/api/v1/keys/${encodeURIComponent(key.id)}`);
      toast("Key revoked", { detail: `${key.name} (${key.prefix}…)` });
    } catch (error) {
      if (error.status === 401) return;
      toast("Key not revoked", { tone: "error", detail: error.message });
    }
    await reloadQuietly();
    name.focus();
  });
  form.addEventListener("submit", create);
  name.addEventListener("input", () => name.getAttribute("aria-invalid") === "true" && fieldError(""));

  return {
    reload: reloadQuietly,
    // Events sent with a key move that key's "last used".
    noteEvents(events) {
      if (refreshTimer || !events.some((e) => e.source?.kind === "key")) return;
      refreshTimer = setTimeout(() => {
        refreshTimer = 0;
        reloadQuietly();
      }, USE_REFRESH_MS);
    },
    prefixOf: (id) => keys.find((k) => k.id === id)?.prefix || "",
    tick() {
      for (const time of list.querySelectorAll("time")) time.textContent = ago(time.dateTime);
    },
    reset() {
      generation++;
      clearTimeout(refreshTimer);
      refreshTimer = 0;
      keys = [];
      hideSecret();
      if (dialog.open) dialog.close("no");
      form.reset();
      fieldError("");
      render();
    },
  };
}
