/**
 * Challenge–response proofs for the sentinel protocol's AUTH_* messages (see
 * codec.ts). The secret never crosses the wire, and a fresh nonce on each side
 * makes every proof good for one connection only:
 *
 * ```
 * client → AUTH_REQUEST
 * server → AUTH_CHALLENGE server_nonce
 * client → AUTH_RESPONSE  client_nonce, HMAC-SHA256(secret, "pgferry-sentinel-auth-v1:client" || server_nonce || client_nonce)
 * server → AUTH_OK        HMAC-SHA256(secret, "pgferry-sentinel-auth-v1:server" || server_nonce || client_nonce)
 * ```
 *
 * Distinct labels keep a server proof from being replayed as a client proof.
 */
import { AUTH_BLOB_SIZE } from "./codec.ts";

const CLIENT_LABEL = new TextEncoder().encode("pgferry-sentinel-auth-v1:client");
const SERVER_LABEL = new TextEncoder().encode("pgferry-sentinel-auth-v1:server");

/** 32 bytes from the system's cryptographic random source. */
export function newNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(AUTH_BLOB_SIZE));
}

/** The proof a client sends in AUTH_RESPONSE. */
export function clientProof(
  secret: string | Uint8Array,
  serverNonce: Uint8Array,
  clientNonce: Uint8Array,
): Promise<Uint8Array> {
  return proof(secret, CLIENT_LABEL, serverNonce, clientNonce);
}

/** The proof a server sends in AUTH_OK, so that the client knows the server too. */
export function serverProof(
  secret: string | Uint8Array,
  serverNonce: Uint8Array,
  clientNonce: Uint8Array,
): Promise<Uint8Array> {
  return proof(secret, SERVER_LABEL, serverNonce, clientNonce);
}

/**
 * Compares two byte strings in time that depends only on their length, so a
 * peer cannot learn a proof byte by byte from response times.
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

async function proof(
  secret: string | Uint8Array,
  label: Uint8Array,
  serverNonce: Uint8Array,
  clientNonce: Uint8Array,
): Promise<Uint8Array> {
  checkNonce(serverNonce, "server");
  checkNonce(clientNonce, "client");
  const keyBytes = typeof secret === "string" ? new TextEncoder().encode(secret) : secret.slice();
  if (keyBytes.length === 0) throw new RangeError("The sentinel secret is empty");
  const key = await crypto.subtle.importKey(
    "raw",
    keyBytes,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const data = new Uint8Array(label.length + 2 * AUTH_BLOB_SIZE);
  data.set(label, 0);
  data.set(serverNonce, label.length);
  data.set(clientNonce, label.length + AUTH_BLOB_SIZE);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, data));
}

function checkNonce(nonce: Uint8Array, side: string): void {
  if (nonce.length !== AUTH_BLOB_SIZE) {
    throw new RangeError(
      `Invalid ${side} nonce length: got ${nonce.length} bytes, expected ${AUTH_BLOB_SIZE}`,
    );
  }
}
