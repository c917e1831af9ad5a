// The official MCP TypeScript SDK's client, signing in through Ostiary with its own OAuth support
// (StreamableHTTPClientTransport + an OAuthClientProvider), headless: the authorization URL goes to stdout for
// the test's Chromium, and the code comes back to this process's loopback callback.
//
//   node mcp_client.mjs <MCP server URL> pre-registered <client id>
//   node mcp_client.mjs <MCP server URL> dcr
//   node mcp_client.mjs <MCP server URL> metadata-document <client ID metadata document URL>
//
// How the client is known to Ostiary: registered beforehand (the provider returns its client id); registered by
// the SDK itself (RFC 7591: the provider has no client information, so the SDK POSTs its clientMetadata to the
// registration_endpoint); or a client ID metadata document (the provider's clientMetadataUrl: the SDK sees
// client_id_metadata_document_supported in Ostiary's metadata and uses the URL as its client_id).
//
// Every line on stdout is one JSON event: {"event": "authorize", "url": …}, {"event": "called", …},
// {"event": "refreshed", …}. Exits non-zero on any failure.
import http from 'node:http';
import { register } from 'node:module';

const [serverUrl, mode, arg] = process.argv.slice(2);
if (!['pre-registered', 'dcr', 'metadata-document'].includes(mode)) throw new Error(`unknown mode ${mode}`);

// The test serves the metadata document over http on 127.0.0.1 (Ostiary fetches http URLs only on loopback
// while its own issuer is loopback). The SDK accepts only https there (isHttpsUrl in client/auth.js); so, in
// this mode only, that one check is widened to http://127.0.0.1 as the SDK's module is loaded, the rest of the
// flow is the SDK's. (https with a test CA is not an option: Ostiary's fetcher trusts the system CAs only.)
// If the SDK's check changes, loading fails loudly rather than testing something else.
if (mode === 'metadata-document') {
  const hooks = `
    const CHECK = "return url.protocol === 'https:' && url.pathname !== '/';";
    const WIDER = "return (url.protocol === 'https:' || (url.protocol === 'http:' && url.hostname === '127.0.0.1')) && url.pathname !== '/';";
    export async function load(url, context, nextLoad) {
      const result = await nextLoad(url, context);
      if (!url.endsWith('/@modelcontextprotocol/sdk/dist/esm/client/auth.js')) return result;
      const source = String(result.source);
      if (!source.includes(CHECK)) throw new Error('the SDK changed its clientMetadataUrl check (isHttpsUrl)');
      return { ...result, source: source.replace(CHECK, WIDER) };
    }`;
  register('data:text/javascript,' + encodeURIComponent(hooks));
}
// imported only now, so that the hook above applies to them
const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
const { UnauthorizedError } = await import('@modelcontextprotocol/sdk/client/auth.js');

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
const store = { tokens: undefined, verifier: undefined, tokenRequests: 0, client: undefined };
if (mode === 'pre-registered') {
  store.client = { client_id: arg, redirect_uris: [redirectUrl], grant_types: GRANTS, token_endpoint_auth_method: 'none' };
}

const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadataUrl() { return mode === 'metadata-document' ? arg : undefined; },
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
  say({ event: 'called', client_id: store.client?.client_id, whoami, access_token: signedIn.access_token, refresh_token: signedIn.refresh_token });

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
