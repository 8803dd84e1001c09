// Sign-in and registration, and the token kept for this tab's session (sessionStorage: it
// goes away with the tab and is never sent anywhere but the Authorization header).

import { $, $$, show } from "./dom.js";

const KEY = "eventflow.session";
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

export const session = {
  load() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(KEY));
      return saved && saved.expiresAt > Date.now() ? saved : null;
    } catch {
      return null;
    }
  },
  save(value) {
    sessionStorage.setItem(KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

// Signs the session out on the server, so the token stops working everywhere and not only in
// this tab. Best effort: the caller forgets the token whatever the answer, or if none comes.
// The request takes the token when it is called, so the caller may forget it right after.
export function revokeSession(api) {
  return api.post("/api/v1/auth/logout").catch(() => {});
}

export function mountSignIn({ api, onSignedIn }) {
  const root = $("#signin");
  const form = $("#signin-form");
  const notice = $("#signin-notice");
  const submit = $("button[type=submit]", form);
  let mode = "login";

  function fieldError(name, message) {
    const input = form.elements[name];
    input.setAttribute("aria-invalid", message ? "true" : "false");
    $(`[data-error-for=${name}]`, form).textContent = message || "";
  }

  function formError(message) {
    $(".form-error", form).textContent = message || "";
  }

  function clearErrors() {
    fieldError("email");
    fieldError("password");
    formError();
  }

  function setMode(next) {
    mode = next;
    for (const tab of $$("[data-mode]", root)) tab.setAttribute("aria-selected", tab.dataset.mode === mode);
    submit.textContent = mode === "login" ? "Sign in" : "Create account";
    form.elements.password.autocomplete = mode === "login" ? "current-password" : "new-password";
    $("#password-hint").hidden = mode === "login";
    clearErrors();
  }

  function validate(email, password) {
    let ok = true;
    if (!EMAIL.test(email)) {
      fieldError("email", "Enter an email address like ada@example.com");
      ok = false;
    }
    if (mode === "register" && password.length < 8) {
      fieldError("password", "Use at least 8 characters");
      ok = false;
    } else if (!password) {
      fieldError("password", "Enter your password");
      ok = false;
    }
    return ok;
  }

  function explain(error) {
    if (error.status === 409) return fieldError("email", "An account with this email exists: sign in instead");
    for (const item of error.problem?.errors || []) {
      const field = item.loc?.find((part) => part === "email" || part === "password");
      if (field) return fieldError(field, item.msg);
    }
    formError(error.message);
  }

  async function signIn(email, password) {
    const token = await api.postAnonymous("/api/v1/auth/login", { email, password });
    const value = { token: token.access_token, email, expiresAt: Date.now() + token.expires_in * 1000 };
    session.save(value);
    form.reset();
    onSignedIn(value);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const email = form.elements.email.value.trim();
    const password = form.elements.password.value;
    if (!validate(email, password)) return;
    submit.disabled = true;
    try {
      if (mode === "register") await api.postAnonymous("/api/v1/auth/register", { email, password });
      await signIn(email, password);
    } catch (error) {
      explain(error);
    } finally {
      submit.disabled = false;
    }
  });
  for (const tab of $$("[data-mode]", root)) tab.addEventListener("click", () => setMode(tab.dataset.mode));

  return {
    open(message = "", tone = "info") {
      notice.textContent = message;
      notice.dataset.tone = tone;
      show(notice, Boolean(message));
      show(root);
      form.elements.email.focus();
    },
    close() {
      show(root, false);
      show(notice, false);
    },
  };
}
