// The official MCP TypeScript SDK's client, signing in through Ostiary with its own OAuth support
// (StreamableHTTPClientTransport + an OAuthClientProvider), headless: the authorization URL goes to stdout for
// the test's Chromium, and the code comes back to this process's loopback callback.
//
//   node mcp_client.mjs <MCP server URL> <pre-registered client id>
//
// Every line on stdout is one JSON event: {"event": "authorize", "url": …}, {"event": "called", …},
// {"event": "refreshed", …}. Exits non-zero on any failure.
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const [serverUrl, clientId] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

let arrived;
const callback = new Promise((resolve) => { arrived = resolve; });
const loopback = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname !== '/callback') { res.writeHead(404); res.end(); return; }
  arrived(Object.fromEntries(url.searchParams));
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end("<!doctype html><title>Done</title><h1 id='done'>You can close this window.</h1>");
});
await new Promise((resolve) => loopback.listen(0, '127.0.0.1', resolve));
const redirectUrl = `http://127.0.0.1:${loopback.address().port}/callback`;

const GRANTS = ['authorization_code', 'refresh_token'];
const store = { tokens: undefined, verifier: undefined, tokenRequests: 0,
  client: { client_id: clientId, redirect_uris: [redirectUrl], grant_types: GRANTS, token_endpoint_auth_method: 'none' } };

const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return { client_name: 'TS MCP client', redirect_uris: [redirectUrl], grant_types: GRANTS,
             response_types: ['code'], token_endpoint_auth_method: 'none' };
  },
  clientInformation() { return store.client; },
  saveClientInformation(info) { store.client = info; },
  tokens() { return store.tokens; },
  saveTokens(tokens) { store.tokens = tokens; store.tokenRequests += 1; },
  redirectToAuthorization(url) { say({ event: 'authorize', url: url.href }); },
  saveCodeVerifier(verifier) { store.verifier = verifier; },
  codeVerifier() { return store.verifier; },
};

const transport = () => new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
const structured = (result) => { if (result.isError) throw new Error(JSON.stringify(result.content)); return result.structuredContent; };

try {
  let client = new Client({ name: 'ostiary-ts-interop', version: '0.0.0' });
  const first = transport();
  try {
    await client.connect(first);
    throw new Error('connected without signing in');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  const query = await callback;
  if (query.error) throw new Error(`authorization failed: ${query.error} ${query.error_description ?? ''}`);
  await first.finishAuth(query.code);
  client = new Client({ name: 'ostiary-ts-interop', version: '0.0.0' });
  await client.connect(transport());
  const whoami = structured(await client.callTool({ name: 'whoami', arguments: {} }));
  const signedIn = { ...store.tokens };
  say({ event: 'called', whoami, access_token: signedIn.access_token, refresh_token: signedIn.refresh_token });

  // The server now refuses the access token (as it would an expired one): on that 401 the SDK refreshes
  // with the refresh token and retries, with no second trip through the browser.
  store.tokens = { ...store.tokens, access_token: 'revoked-or-expired' };
  const notes = structured(await client.callTool({ name: 'list_notes', arguments: {} }));
  const again = structured(await client.callTool({ name: 'whoami', arguments: {} }));
  say({ event: 'refreshed', notes, whoami: again, access_token: store.tokens.access_token,
        refresh_token: store.tokens.refresh_token, token_responses: store.tokenRequests });
  await client.close();
} catch (e) {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exitCode = 1;
} finally {
  loopback.close();
}
