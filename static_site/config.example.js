// Copy to config.js (not committed) next to index.html. The deployment writes its own.
// Loaded as a classic script before the app's modules.
window.TASKQUEUE_CONFIG = {
  // Base URL of the HTTP API without a trailing slash; "" when the API is served from the
  // same origin as the page (the local stack).
  apiBaseUrl: "",

  // The WebSocket API that pushes task changes to the page (the stack's WebSocketUrl output,
  // wss://<api>.execute-api.<region>.amazonaws.com/live), or a path on the page's origin
  // ("/live" on the local stack). Leave out to have the page poll instead.
  // websocketUrl: "wss://xxxxxxxxxx.execute-api.eu-west-1.amazonaws.com/live",

  // Leave out for the local stack (no sign-in). On AWS, the Cognito user pool app client
  // (no client secret; authorization code grant; callback and sign-out URL = the site URL):
  // cognito: {
  //   region: "eu-west-1",
  //   userPoolId: "eu-west-1_XXXXXXXXX",
  //   clientId: "xxxxxxxxxxxxxxxxxxxxxxxxxx",
  //   domain: "my-tasks.auth.eu-west-1.amazoncognito.com",
  //   // optional: redirectUri (default: this page's URL), logoutUri, scopes
  //   // (default ["openid", "email", "profile"]), tokenUse: "id" (default) or "access"
  // },
};
