// clusterd's Swagger UI start-up: a token field above the page, kept in this browser's
// localStorage, sent as a bearer token with every request Swagger UI makes, the fetch of the
// OpenAPI document included (with server.auth_token set, the document needs it like any /api route).
window.onload = function () {
  const KEY = "clusterd-token";
  const bar = document.createElement("form");
  bar.style.cssText = "padding:8px 20px;font-family:sans-serif;font-size:14px;background:#fafafa;border-bottom:1px solid #ddd";
  bar.innerHTML =
    '<label>clusterd token <input name="token" type="password" autocomplete="off" size="40"></label> ' +
    '<button type="submit">Use</button> <small>(needed when the server has an auth_token; kept in this browser)</small>';
  bar.token.value = localStorage.getItem(KEY) || "";
  bar.onsubmit = function (e) {
    e.preventDefault();
    localStorage.setItem(KEY, bar.token.value.trim());
    location.reload();
  };
  document.body.prepend(bar);

  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
    requestInterceptor: function (req) {
      const token = localStorage.getItem(KEY);
      // A token given through "Authorize" is already on the request and wins.
      if (token && !req.headers.Authorization) {
        req.headers.Authorization = "Bearer " + token;
      }
      return req;
    },
  });
};
