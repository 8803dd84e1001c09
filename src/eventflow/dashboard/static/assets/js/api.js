// The JSON API client: bearer token, problem details (RFC 9457) turned into ApiError, and one
// place that notices a 401 so the whole dashboard can go back to sign-in.

import config from "../config.js";

const base = String(config.apiBase || "").replace(/\/+$/, "");

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export const apiUrl = (path) => base + path;

export function createApi({ token, onUnauthorized }) {
  async function request(method, path, { body, auth = true } = {}) {
    const headers = { Accept: "application/json, application/problem+json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth) headers.Authorization = `Bearer ${token()}`;
    let response;
    try {
      response = await fetch(apiUrl(path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, {
        title: "Network error",
        detail: `Cannot reach the EventFlow API${base ? ` at ${base}` : ""}`,
      });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { detail: text.slice(0, 200) };
    }
    if (!response.ok) {
      const error = new ApiError(response.status, data);
      if (response.status === 401 && auth) onUnauthorized(error.message);
      throw error;
    }
    return data;
  }

  return {
    get: (path) => request("GET", path),
    post: (path, body) => request("POST", path, { body }),
    delete: (path) => request("DELETE", path),
    postAnonymous: (path, body) => request("POST", path, { body, auth: false }),
  };
}
