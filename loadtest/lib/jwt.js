// HS256 tokens minted inside k6 (k6/crypto), so a load test needs no identity provider in
// development and staging. Production deployments that only accept RS256/ES256 pass
// pre-issued tokens instead (TOKENS_FILE).
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';

function b64url(text) {
  return encoding.b64encode(text, 'rawurl');
}

// `iss` and `aud` the ingress requires in production (its JWT_ISSUER and JWT_AUDIENCE), when
// set in k6's environment.
export function bound(claims) {
  const out = { ...claims };
  if (__ENV.JWT_ISSUER) out.iss = __ENV.JWT_ISSUER;
  if (__ENV.JWT_AUDIENCE) out.aud = __ENV.JWT_AUDIENCE;
  return out;
}

export function mintHs256(secret, claims) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const signature = crypto.hmac('sha256', secret, `${header}.${payload}`, 'base64rawurl');
  return `${header}.${payload}.${signature}`;
}

// One token per distinct user `${prefix}-${n}`, valid for `ttlSeconds`.
export function userTokens(secret, prefix, count, ttlSeconds) {
  const now = Math.floor(Date.now() / 1000);
  const tokens = new Array(count);
  for (let n = 0; n < count; n++) {
    tokens[n] = mintHs256(secret, bound({ sub: `${prefix}-${n}`, iat: now, exp: now + ttlSeconds }));
  }
  return tokens;
}
