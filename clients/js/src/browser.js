// The pages' build (static/js/realtime.js, `npm run build:client` in frontend/): the same client as a
// classic script that sets window.WebconnectRealtime, as the pages' scripts expect.
import { RealtimeError, WebconnectRealtime } from "./index.js";

WebconnectRealtime.RealtimeError = RealtimeError;
globalThis.WebconnectRealtime = WebconnectRealtime;
