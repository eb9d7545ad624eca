/**
 * DKIM signing (RFC 6376) of mail from this server's own domains, by mailauth, as the message
 * streams in: the signature is ready when the content ends, and goes above the delivered
 * message with the other fields Postern adds. Keys are RSA (rsa-sha256) or Ed25519
 * (ed25519-sha256, RFC 8463), one per domain.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { Effect, Schema } from "effect"
import { dkimSign } from "mailauth"
import * as Streamed from "./Streamed.ts"

export interface SigningKey {
  readonly domain: string
  readonly selector: string
  /** PEM (PKCS#8 or PKCS#1). */
  readonly privateKey: string
  readonly algorithm: "rsa-sha256" | "ed25519-sha256"
}

/** Ends in the DKIM-Signature field (CRLF-ended lines), or undefined if signing failed; never rejects. */
export interface Signer extends Streamed.Streamed<string | undefined> {
  readonly key: SigningKey
}

/** The algorithm a private key signs with; undefined for a key of another kind. */
export const algorithmOf = (pem: string): SigningKey["algorithm"] | undefined => {
  const type = Crypto.createPrivateKey(pem).asymmetricKeyType
  return type === "rsa" ? "rsa-sha256" : type === "ed25519" ? "ed25519-sha256" : undefined
}

/** The DNS TXT record that publishes the public half of `privateKey` (RFC 6376 3.6.1, RFC 8463). */
export const dnsRecord = (privateKey: string): string => {
  const key = Crypto.createPublicKey(Crypto.createPrivateKey(privateKey))
  if (key.asymmetricKeyType === "ed25519") {
    // Ed25519 publishes the bare 32-byte key: the end of its SPKI form.
    const spki = key.export({ type: "spki", format: "der" })
    return `v=DKIM1; k=ed25519; p=${spki.subarray(spki.length - 32).toString("base64")}`
  }
  return `v=DKIM1; k=rsa; p=${key.export({ type: "spki", format: "der" }).toString("base64")}`
}

export const start = (key: SigningKey): Signer => {
  const signature = {
    signingDomain: key.domain,
    selector: key.selector,
    privateKey: key.privateKey,
    algorithm: key.algorithm,
    canonicalization: "relaxed/relaxed"
  }
  return {
    key,
    ...Streamed.start((input) =>
      dkimSign(input, { ...signature, signatureData: [signature] }).then(
        (result) => (result.signatures === "" ? undefined : result.signatures.replace(/\r?\n/g, "\r\n")),
        () => undefined
      )
    )
  }
}

/** A signing key file that cannot be used: the daemon does not start with it. */
export class DkimKeyError extends Schema.TaggedError<DkimKeyError>()("DkimKeyError", {
  file: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `DKIM key ${this.file}: ${this.reason}`
  }
}

/** Reads the configured keys, by domain (lower-cased). */
export const loadKeys = (
  keys: ReadonlyArray<{ readonly domain: string; readonly selector: string; readonly key: string }>
): Effect.Effect<ReadonlyMap<string, SigningKey>, DkimKeyError> =>
  Effect.try({
    try: () =>
      new Map(keys.map((k) => {
        const privateKey = Fs.readFileSync(k.key, "utf8")
        const algorithm = algorithmOf(privateKey)
        if (algorithm === undefined) throw new Error(`${k.key}: not an RSA or Ed25519 private key`)
        return [k.domain.toLowerCase(), { domain: k.domain.toLowerCase(), selector: k.selector, privateKey, algorithm }] as const
      })),
    catch: (error) => {
      const text = error instanceof Error ? error.message : String(error)
      const file = keys.find((k) => text.includes(k.key))?.key ?? keys[0]?.key ?? ""
      return new DkimKeyError({ file, reason: text })
    }
  })
