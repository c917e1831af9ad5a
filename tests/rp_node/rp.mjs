// A relying party built on panva's openid-client v6, driven by tests/browser/test_openid_client.py.
//
// usage: node rp.mjs ISSUER CLIENT_ID REDIRECT_URI [--par] [--dpop] [--private-key-jwt]
// 1. discovery (http is allowed only because the test issuer is on loopback), PKCE S256, state, nonce;
//    a public client (no authentication), or with --private-key-jwt a confidential one that signs client assertions
//    (RFC 7523) with the private JWK in RP_PRIVATE_JWK (an https issuer's CA: NODE_EXTRA_CA_CERTS);
//    --dpop: a DPoP key pair (ES256) made by openid-client, its proofs sent with every request below (RFC 9449);
//    --par: the authorization request is pushed first (RFC 9126, buildAuthorizationUrlWithPAR);
// 2. prints {"authorization_url": ...} as one JSON line and waits for the callback URL on stdin
//    (a person signs in and consents in the browser: the test drives Chromium there);
// 3. authorizationCodeGrant (checks state, nonce, PKCE, iss and the id_token claims), fetchUserInfo,
//    a refresh (rotation), and prints the results as one JSON line.
import * as client from 'openid-client'
import { createInterface } from 'node:readline'

const args = process.argv.slice(2)
const flags = new Set(args.filter((a) => a.startsWith('--')))
const [issuer, clientId, redirectUri] = args.filter((a) => !a.startsWith('--'))
const unknown = [...flags].filter((f) => !['--par', '--dpop', '--private-key-jwt'].includes(f))
if (!issuer || !clientId || !redirectUri || unknown.length) {
  console.error('usage: node rp.mjs ISSUER CLIENT_ID REDIRECT_URI [--par] [--dpop] [--private-key-jwt]')
  process.exit(2)
}

let clientAuth = client.None()
let authMethod = 'none'
if (flags.has('--private-key-jwt')) {
  const jwk = JSON.parse(process.env.RP_PRIVATE_JWK)
  const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: jwk.crv }, false, ['sign'])
  clientAuth = client.PrivateKeyJwt({ key, kid: jwk.kid })
  authMethod = 'private_key_jwt'
}
const config = await client.discovery(
  new URL(issuer), clientId, { redirect_uris: [redirectUri], token_endpoint_auth_method: authMethod },
  clientAuth, { execute: [client.allowInsecureRequests] })

let options
let dpopPublicJwk
if (flags.has('--dpop')) {
  const keyPair = await client.randomDPoPKeyPair('ES256')
  options = { DPoP: client.getDPoPHandle(config, keyPair) }
  dpopPublicJwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey)
}

const codeVerifier = client.randomPKCECodeVerifier()
const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier)
const state = client.randomState()
const nonce = client.randomNonce()
const parameters = {
  redirect_uri: redirectUri,
  scope: 'openid profile email offline_access',
  code_challenge: codeChallenge,
  code_challenge_method: 'S256',
  state,
  nonce,
}
const authorizationUrl = flags.has('--par')
  ? await client.buildAuthorizationUrlWithPAR(config, parameters, options)
  : client.buildAuthorizationUrl(config, parameters)
console.log(JSON.stringify({ authorization_url: authorizationUrl.href, state, nonce }))

const rl = createInterface({ input: process.stdin })
const callback = await new Promise((resolve) => rl.once('line', (line) => resolve(line.trim())))
rl.close()

const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
}, undefined, options)
const claims = tokens.claims()
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub, options)
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, options)
const refreshedUserinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub, options)

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
  refreshed_token_type: refreshed.token_type,
  refreshed_userinfo_sub: refreshedUserinfo.sub,
  end_session_url: client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token }).href,
  // for the test's own checks of the binding (cnf.jkt) and of what the tokens cannot do without the key
  ...(dpopPublicJwk ? {
    dpop_public_jwk: dpopPublicJwk,
    access_token: tokens.access_token,
    refreshed: { access_token: refreshed.access_token, refresh_token: refreshed.refresh_token },
  } : {}),
}))
