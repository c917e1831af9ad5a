/* global oidc */
// The SPA: sign-in with Authorization Code + PKCE (oidc-client-ts sends no nonce unless asked), user info,
// a refresh from the browser, and a logout that revokes both tokens (RFC 7009). Each step writes its result
// as JSON into <pre id="STEP"> (or <pre id="error">) for the test to read.
const cfg = window.SPA_CONFIG
const mgr = new oidc.UserManager({
  authority: cfg.authority,
  client_id: cfg.client_id,
  redirect_uri: window.location.origin + '/callback',
  response_type: 'code',
  scope: 'openid profile email offline_access',
  loadUserInfo: true,
  automaticSilentRenew: false
})

function show (id, data) {
  const pre = document.createElement('pre')
  pre.id = id
  pre.textContent = JSON.stringify(data)
  document.body.appendChild(pre)
}

async function step (id, fn) {
  try {
    show(id, await fn())
  } catch (e) {
    show('error', { step: id, message: String((e && e.message) || e), error: (e && e.error) || null })
  }
}

function tokens (user) {
  return {
    access_token: user.access_token,
    refresh_token: user.refresh_token,
    id_token: user.id_token,
    scope: user.scope,
    profile: user.profile
  }
}

document.getElementById('login').onclick = () => step('login-started', async () => {
  await mgr.signinRedirect(cfg.nonce ? { nonce: cfg.nonce } : {})
  return {}
})

document.getElementById('userinfo').onclick = () => step('userinfo-result', async () => {
  // what an SPA does for its API calls: the bearer token, cross-origin, read back
  const user = await mgr.getUser()
  const discovery = await (await fetch(cfg.authority + '/.well-known/openid-configuration')).json()
  const r = await fetch(discovery.userinfo_endpoint, { headers: { Authorization: 'Bearer ' + user.access_token } })
  return { status: r.status, body: await r.json() }
})

document.getElementById('refresh').onclick = () => step('refreshed', async () => {
  return tokens(await mgr.signinSilent()) // with a refresh token: the refresh_token grant, no iframe
})

document.getElementById('logout').onclick = () => step('revoked', async () => {
  await mgr.revokeTokens(['access_token', 'refresh_token'])
  await mgr.removeUser()
  return { revoked: true }
})

if (window.location.pathname === '/callback') {
  step('signed-in', async () => tokens(await mgr.signinCallback()))
}
document.getElementById('spa-ready').hidden = false
