// A real OpenID Provider (npm `oidc-provider`) for the authn crate's integration tests.
//
//   node tests/oidc/provider.mjs
//
// Listens on 127.0.0.1 with two ephemeral ports (plain HTTP, loopback only) and prints ONE JSON
// line to stdout once ready:
//
//   {"issuer":"http://127.0.0.1:PORT","admin":"http://127.0.0.1:PORT2","audience":"https://airlock.test",
//    "clients":{"RS256":{"client_id":..,"client_secret":..,"groups":[..]},"ES256":{..},"EdDSA":{..}},
//    "device_client":"airlock-cli","kids":["..",".."]}
//
// Everything else (oidc-provider notices included) goes to stderr.
//
// Token issuance (the issuer port) is plain oidc-provider:
//   * client_credentials with a resource indicator -> JWT access token (typ at+jwt). The client
//     decides the signing algorithm: airlock-rs256 -> RS256, airlock-es256 -> ES256,
//     airlock-eddsa -> EdDSA. Claims: iss, sub (= client_id), aud, client_id, azp, groups, iat, exp, jti.
//   * device authorization grant (RFC 8628) for the public client `airlock-cli`.
//
// Admin endpoints (the admin port), for tests only:
//   POST /rotate[?keep=1]          new key set (one key per alg); keep=1 keeps the old keys
//                                  published (new ones sign); answers {"kids":[...]}
//   POST /device/approve           body {"user_code":"..","sub":"alice"}: approves a pending
//                                  device code as that user (what the browser login would do);
//                                  tokens then carry sid and the user's groups
//   GET  /healthz                  {"ok":true}
//
// Rotation swaps in a new Provider instance with the same issuer and clients; in-flight device
// codes are lost, which is fine for tests.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

// oidc-provider prints development notices with console.info; keep stdout for the ready line.
console.info = console.error;
console.log = console.error;

const AUDIENCE = 'https://airlock.test';
const CLIENTS = {
  RS256: { client_id: 'airlock-rs256', client_secret: 'rs256-secret', groups: ['airlock:agents', 'alg:rs256'] },
  ES256: { client_id: 'airlock-es256', client_secret: 'es256-secret', groups: ['airlock:agents', 'alg:es256'] },
  EdDSA: { client_id: 'airlock-eddsa', client_secret: 'eddsa-secret', groups: ['airlock:agents', 'alg:eddsa'] },
};
const DEVICE_CLIENT = 'airlock-cli';
// Groups of the users that can approve device codes (any other sub gets no groups).
const USER_GROUPS = { alice: ['airlock:humans', 'team-a'], bob: ['airlock:humans'] };

const algOf = Object.fromEntries(Object.entries(CLIENTS).map(([alg, c]) => [c.client_id, alg]));

let generation = 0;
function newKeys() {
  generation += 1;
  const gen = (type, opts, alg) => {
    const { privateKey } = generateKeyPairSync(type, opts);
    return { ...privateKey.export({ format: 'jwk' }), kid: `${alg.toLowerCase()}-${generation}-${randomUUID().slice(0, 8)}`, alg, use: 'sig' };
  };
  return [
    gen('rsa', { modulusLength: 2048 }, 'RS256'),
    gen('ec', { namedCurve: 'P-256' }, 'ES256'),
    gen('ed25519', {}, 'EdDSA'),
  ];
}

function newProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: [
      ...Object.values(CLIENTS).map((c) => ({
        client_id: c.client_id,
        client_secret: c.client_secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
      {
        client_id: DEVICE_CLIENT,
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'none',
      },
    ],
    jwks: { keys },
    enabledJWA: { authorizationSigningAlgValues: ['RS256', 'ES256', 'EdDSA'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => {
          if (resource !== AUDIENCE) throw new Error('unknown resource');
          return {
            scope: 'kube',
            audience: AUDIENCE,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg: algOf[client.clientId] ?? 'RS256' } },
          };
        },
      },
    },
    findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    extraTokenClaims: (ctx, token) => {
      const clientId = token.clientId;
      const alg = algOf[clientId];
      const groups = alg ? CLIENTS[alg].groups : (USER_GROUPS[token.accountId] ?? []);
      return { azp: clientId, groups, ...(token.sid ? { sid: token.sid } : {}) };
    },
    cookies: { keys: ['airlock-test-cookie-key'] },
    ttl: { ClientCredentials: 300, DeviceCode: 600, AccessToken: 300, Grant: 600 },
  });
  return provider;
}

async function readJson(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body ? JSON.parse(body) : {};
}

function reply(res, status, obj) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(obj));
}

const listen = (server) => new Promise((resolve) => {
  server.listen(0, '127.0.0.1', () => resolve(server.address().port));
});

let keys = newKeys();
let provider;
const oidcServer = createServer((req, res) => provider.callback()(req, res));
const issuer = `http://127.0.0.1:${await listen(oidcServer)}`;
provider = newProvider(issuer, keys);

const adminServer = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://admin');
    if (req.method === 'GET' && url.pathname === '/healthz') {
      return reply(res, 200, { ok: true });
    }
    if (req.method === 'POST' && url.pathname === '/rotate') {
      const fresh = newKeys();
      keys = url.searchParams.get('keep') === '1' ? [...fresh, ...keys] : fresh;
      provider = newProvider(issuer, keys);
      return reply(res, 200, { kids: keys.map((k) => k.kid) });
    }
    if (req.method === 'POST' && url.pathname === '/device/approve') {
      const { user_code: userCode, sub } = await readJson(req);
      // Stored normalised, as the /device form would submit it: upper case, no dashes.
      const normalized = String(userCode ?? '').toUpperCase().replace(/\W/g, '');
      const code = await provider.DeviceCode.findByUserCode(normalized);
      if (!code) return reply(res, 404, { error: 'unknown user_code' });
      const grant = new provider.Grant({ accountId: sub, clientId: code.clientId });
      grant.addOIDCScope('openid');
      grant.addResourceScope(AUDIENCE, 'kube');
      code.accountId = sub;
      // The audience is fixed; device requests need not send a resource indicator.
      code.resource ??= AUDIENCE;
      code.grantId = await grant.save();
      code.sid = `sid-${randomUUID()}`;
      code.authTime = Math.floor(Date.now() / 1000);
      await code.save();
      return reply(res, 200, { ok: true, sid: code.sid });
    }
    return reply(res, 404, { error: 'not found' });
  } catch (err) {
    console.error(err);
    return reply(res, 500, { error: String(err) });
  }
});
const admin = `http://127.0.0.1:${await listen(adminServer)}`;

process.stdout.write(`${JSON.stringify({
  issuer,
  admin,
  audience: AUDIENCE,
  clients: CLIENTS,
  device_client: DEVICE_CLIENT,
  kids: keys.map((k) => k.kid),
})}\n`);

// The test harness kills us; also exit if our parent closes stdin (e.g. the test process died).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
