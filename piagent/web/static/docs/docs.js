// /docs: Swagger UI over /openapi.json. No validator badge (it would ask a
// server on the internet), nothing loaded from elsewhere.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
    withCredentials: false,
  });
});
