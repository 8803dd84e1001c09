// Where the EventFlow API lives. Empty: the same origin that served this page (the API itself
// serves the dashboard at "/"). When this folder is served by another static server, set the
// API's URL here, e.g. "https://events.example.com", and list this page's origin in the API's
// EVENTFLOW_CORS_ORIGINS.
export default {
  apiBase: "",
};
