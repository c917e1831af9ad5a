// A relying party built on panva's openid-client v6, driven by tests/browser/test_openid_client.py.
//
// usage: node rp.mjs ISSUER CLIENT_ID REDIRECT_URI
// 1. discovery (http is allowed only because the test issuer is on loopback), PKCE S256, state, nonce;
// 2. prints {"authorization_url": ...} as one JSON line and waits for the callback URL on stdin
//    (a person signs in and consents in the browser: the test drives Chromium there);
// 3. authorizationCodeGrant (checks state, nonce, PKCE, iss and the id_token claims), fetchUserInfo,
//    a refresh (rotation), and prints the results as one JSON line.
import * as client from 'openid-client'
import { createInterface } from 'node:readline'

const [issuer, clientId, redirectUri] = process.argv.slice(2)
if (!issuer || !clientId || !redirectUri) {
  console.error('usage: node rp.mjs ISSUER CLIENT_ID REDIRECT_URI')
  process.exit(2)
}

const config = await client.discovery(
  new URL(issuer), clientId, { redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' },
  client.None(), { execute: [client.allowInsecureRequests] })

const codeVerifier = client.randomPKCECodeVerifier()
const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier)
const state = client.randomState()
const nonce = client.randomNonce()
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email offline_access',
  code_challenge: codeChallenge,
  code_challenge_method: 'S256',
  state,
  nonce,
})
console.log(JSON.stringify({ authorization_url: authorizationUrl.href, state, nonce }))

const rl = createInterface({ input: process.stdin })
const callback = await new Promise((resolve) => rl.once('line', (line) => resolve(line.trim())))
rl.close()

const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
})
const claims = tokens.claims()
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)

console.log(JSON.stringify({
  issuer: config.serverMetadata().issuer,
  token_type: tokens.token_type,
  scope: tokens.scope,
  expires_in: tokens.expiresIn(),
  id_token: tokens.id_token,
  claims,
  userinfo,
  refresh_rotated: Boolean(refreshed.refresh_token) && refreshed.refresh_token !== tokens.refresh_token,
  refreshed_access_token: Boolean(refreshed.access_token),
  end_session_url: client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token }).href,
}))
