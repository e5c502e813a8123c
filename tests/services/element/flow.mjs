// What Element does to make an e-mail address discoverable ("Settings → Discovery → Share"),
// through matrix-js-sdk, the client library inside Element (installed from npm by
// tests/services/up.sh; the version pinned by package-lock.json here). Started by
// tests/element_sdk.rs, which reads its stdout.
//
// Environment: SDK_DIR (where up.sh installed it), HS_URL (Synapse's client API), USER_ID
// and ACCESS_TOKEN (a user logged in there), IS_URL (mxisd as Synapse reaches it, https with
// the test CA in NODE_EXTRA_CA_CERTS), EMAIL (the address to share).
//
// stdout: one JSON object a line, `{"step": …, …}`, what each call answered; the last one is
// `{"step":"done"}` or `{"step":"error", "at", "status", "errcode", "message"}` (exit 1).
// After `requestEmailToken` it waits for one line on stdin: the link of the mail, which it
// follows as a browser would.

import { createInterface } from "node:readline";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// The SDK logs to the console: keep stdout for our lines.
for (const level of ["log", "info", "debug", "trace"]) {
    console[level] = (...args) => console.error(...args);
}
const say = (step, fields = {}) => process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
let at = "start";
const fail = (e) => {
    say("error", { at, status: e?.httpStatus ?? null, errcode: e?.errcode ?? null, message: String(e?.message ?? e) });
    process.exit(1);
};
process.on("unhandledRejection", fail);
// Every request has its own deadline (localTimeoutMs); this one bounds the whole flow.
setTimeout(() => fail(new Error("the flow took more than 60 s")), 60_000).unref();

const env = (name) => process.env[name] ?? fail(new Error(`${name} is not set`));
const sdk = await import(pathToFileURL(join(env("SDK_DIR"), "node_modules/matrix-js-sdk/lib/index.js")).href);
const isUrl = env("IS_URL");
const email = env("EMAIL");
const client = sdk.createClient({
    baseUrl: env("HS_URL"),
    idBaseUrl: isUrl,
    userId: env("USER_ID"),
    accessToken: env("ACCESS_TOKEN"),
    localTimeoutMs: 15_000,
});
const step = async (name, call) => {
    at = name;
    try {
        return await call();
    } catch (e) {
        fail(e);
    }
};
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// Element's IdentityAuthClient: an OpenID token from the homeserver, exchanged for a token
// of the identity server, then the terms it asks for.
const openid = await step("getOpenIdToken", () => client.getOpenIdToken());
say("getOpenIdToken", { matrix_server_name: openid.matrix_server_name, expires_in: openid.expires_in });
const registered = await step("registerWithIdentityServer", () => client.registerWithIdentityServer(openid));
const idToken = registered.token;
say("registerWithIdentityServer", { token: typeof idToken });

const terms = await step("getTerms", () => client.getTerms(sdk.SERVICE_TYPES.IS, isUrl));
const urls = Object.values(terms.policies ?? {}).map((policy) => policy.en?.url).filter(Boolean);
say("getTerms", { urls });
await step("agreeToTerms", () => client.agreeToTerms(sdk.SERVICE_TYPES.IS, isUrl, idToken, urls));
say("agreeToTerms");

// Element's AddThreepid.bindEmailAddress: the SDK sends send_attempt as the string "1".
const clientSecret = client.generateClientSecret();
const { sid } = await step("requestEmailToken", () =>
    client.requestEmailToken(email, clientSecret, 1, undefined, idToken),
);
say("requestEmailToken", { sid: typeof sid, mail_to: email });

at = "link";
const { value: link } = await stdin.next();
const page = await step("link", () => fetch(link.trim(), { redirect: "manual", signal: AbortSignal.timeout(15_000) }));
say("link", { status: page.status });

// The user says "Continue": Element binds through the homeserver.
await step("bindThreePid", () =>
    client.bindThreePid({
        sid,
        client_secret: clientSecret,
        id_server: client.getIdentityServerUrl(true),
        id_access_token: idToken,
    }),
);
say("bindThreePid", { id_server: client.getIdentityServerUrl(true) });

const found = await step("identityHashedLookup", () => client.identityHashedLookup([[email, "email"]], idToken));
say("identityHashedLookup", { found });

// "Revoke": the homeserver unbinds it with the identity server.
const unbound = await step("unbindThreePid", () => client.unbindThreePid("email", email));
say("unbindThreePid", unbound);

const after = await step("identityHashedLookup", () => client.identityHashedLookup([[email, "email"]], idToken));
say("identityHashedLookup", { found: after });
say("done");
process.exit(0);
