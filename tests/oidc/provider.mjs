// A real OpenID Provider (npm `oidc-provider`) for the authn crate's integration tests.
//
//   node tests/oidc/provider.mjs
//
// Listens on 127.0.0.1 with two ephemeral ports (plain HTTP, loopback only) and prints ONE JSON
// line to stdout once ready:
//
//   {"issuer":"http://127.0.0.1:PORT","admin":"http://127.0.0.1:PORT2","audience":"https://airlock.test",
//    "clients":{"RS256":{"client_id":..,"client_secret":..,"groups":[..]},"ES256":{..},"EdDSA":{..}},
//    "device_client":"airlock-cli","kids":["..",".."],
//    "web_client":"airlock-web","users":{"alice":[..],"bob":[..],"carol":[..]}}
//
// Everything else (oidc-provider notices included) goes to stderr.
//
// Token issuance (the issuer port) is plain oidc-provider:
//   * client_credentials with a resource indicator -> JWT access token (typ at+jwt). The client
//     decides the signing algorithm: airlock-rs256 -> RS256, airlock-es256 -> ES256,
//     airlock-eddsa -> EdDSA. Claims: iss, sub (= client_id), aud, client_id, azp, groups, iat, exp, jti.
//   * device authorization grant (RFC 8628) for the public client `airlock-cli`.
//   * authorization code with PKCE (S256) for the public client `airlock-web` (Airlock's web
//     UI). It is a native-type client, so any loopback port matches its redirect URI
//     http://127.0.0.1/auth/callback (RFC 8252 §7.3). A browser logs in through oidc-provider's
//     dev interactions: a form where any login and any password work (the login becomes `sub`);
//     consent is granted without asking. The ID token carries `groups` from WEB_GROUPS.
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
import Provider, { interactionPolicy } from 'oidc-provider';

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

// Groups in the web client's ID tokens: alice is also an approver, carol is in `sre` (a
// viewer group in the web tests); anyone else has none.
const WEB_CLIENT = 'airlock-web';
const WEB_GROUPS = {
  alice: [...USER_GROUPS.alice, 'approvers'],
  bob: [...USER_GROUPS.bob],
  carol: ['airlock:humans', 'sre'],
};

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

// oidc-provider asks native clients for consent on every login; the web client is first
// party (see loadExistingGrant), so that check goes.
function interactionsPolicy() {
  const policy = interactionPolicy.base();
  policy.get('consent').checks.remove('native_client_prompt');
  return policy;
}

function newProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    interactions: { policy: interactionsPolicy() },
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
      {
        client_id: WEB_CLIENT,
        application_type: 'native',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/auth/callback', 'http://localhost/auth/callback'],
        token_endpoint_auth_method: 'none',
      },
    ],
    jwks: { keys },
    enabledJWA: { authorizationSigningAlgValues: ['RS256', 'ES256', 'EdDSA'] },
    features: {
      // The login form for the web client's browser login (any login, any password).
      devInteractions: { enabled: true },
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
    // `groups` as a scope whose claim goes into the ID token itself (not only /userinfo).
    claims: { openid: ['sub'], groups: ['groups'] },
    conformIdTokenClaims: false,
    findAccount: (ctx, sub) => ({
      accountId: sub,
      claims: () => ({ sub, groups: WEB_GROUPS[sub] ?? [] }),
    }),
    // The web client is first party: consent is implied, so a login needs no second page.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      if (ctx.oidc.client.clientId !== WEB_CLIENT || !ctx.oidc.session.accountId) return undefined;
      const grant = new ctx.oidc.provider.Grant({
        clientId: WEB_CLIENT,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid groups');
      await grant.save();
      return grant;
    },
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
  web_client: WEB_CLIENT,
  users: WEB_GROUPS,
  kids: keys.map((k) => k.kid),
})}\n`);

// The test harness kills us; also exit if our parent closes stdin (e.g. the test process died).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
