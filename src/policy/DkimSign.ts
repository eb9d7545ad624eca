/**
 * DKIM signing (RFC 6376) of mail from this server's own domains, by mailauth, as the message
 * streams in: the signature is ready when the content ends, and goes above the delivered
 * message with the other fields Postern adds. Keys are RSA (rsa-sha256) or Ed25519
 * (ed25519-sha256, RFC 8463), one per domain.
 */
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { Effect, Schema } from "effect"
import { dkimSign } from "mailauth"
import { describe } from "../log/SystemError.ts"
import * as Headers from "../session/Headers.ts"
import * as Rule from "./Rule.ts"
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

/** mailauth's signing of `input` with `key`: the DKIM-Signature field (lines as mailauth folds them), or "" when it could not sign. */
const sign = (key: SigningKey, input: Parameters<typeof dkimSign>[0]): Promise<string> => {
  const signature = {
    signingDomain: key.domain,
    selector: key.selector,
    privateKey: key.privateKey,
    algorithm: key.algorithm,
    canonicalization: "relaxed/relaxed"
  }
  return dkimSign(input, { ...signature, signatureData: [signature] }).then((result) => result.signatures)
}

/** A signing key from its file (PEM); throws when the file cannot be read or holds another kind of key. */
const readKey = (domain: string, selector: string, file: string): SigningKey => {
  const privateKey = Fs.readFileSync(file, "utf8")
  const algorithm = algorithmOf(privateKey)
  if (algorithm === undefined) throw new Error("not an RSA or Ed25519 private key")
  return { domain, selector, privateKey, algorithm }
}

export const start = (key: SigningKey): Signer => ({
  key,
  ...Streamed.start((input) =>
    sign(key, input).then(
      (signatures) => (signatures === "" ? undefined : signatures.replace(/\r?\n/g, "\r\n")),
      () => undefined
    )
  )
})

export interface RuleOptions {
  readonly domain: string
  readonly selector: string
  /** The private key file (PEM, RSA or Ed25519; `postern dkim keygen` writes one). */
  readonly key: string
  /**
   * Which messages to sign. Default: those of an authenticated client whose envelope sender and
   * From are both in `domain`, so that mail merely claiming the domain is never signed.
   */
  readonly when?: (context: Rule.Context) => boolean
}

/**
 * The DKIM signing rule for the postq stage (vSMTP's dkim_sign): once a message is queued, the
 * message as it will be delivered is signed (relaxed/relaxed) and the DKIM-Signature goes above
 * it. The key is read when the configuration loads; an unusable one stops the load. A message
 * that cannot be signed is deferred (the rule fails: 451 4.3.0, asked again), never sent
 * unsigned. Signing needs the whole message in memory (at most `limits.messageSize`); the
 * `dkim.sign` setting signs as the message streams in instead.
 */
export const rule = (options: RuleOptions): Rule.Rule => {
  const domain = options.domain.toLowerCase()
  let key: SigningKey
  try {
    key = readKey(domain, options.selector, options.key)
  } catch (error) {
    throw new RangeError(`dkimSign: key ${options.key}: ${describe(error)}`)
  }
  const when = options.when ??
    ((context: Rule.Context) =>
      context.authenticated !== undefined &&
      context.from?.slice(context.from.lastIndexOf("@") + 1).toLowerCase() === domain &&
      Headers.addressDomain(context.message?.header("from")) === domain)
  return {
    ...Rule.rule(`dkim sign ${domain}`, (context) => {
      const content = context.message?.content
      if (content === undefined || !when(context)) return Rule.next
      return Effect.flatMap(content(), (message) =>
        Effect.tryPromise(() => sign(key, Buffer.from(message.buffer, message.byteOffset, message.byteLength))).pipe(
          Effect.flatMap((signatures) => {
            const field = /^DKIM-Signature:\s*([\s\S]*?)\s*$/i.exec(signatures)?.[1]
            // One line: relaxed header canonicalization unfolds it anyway (RFC 6376 3.4.2).
            return field === undefined
              ? Effect.fail(`mailauth gave no signature for ${domain}`)
              : Effect.succeed(Rule.withHeaders(Rule.next, { "DKIM-Signature": field.replace(/\r?\n[ \t]+/g, " ") }))
          })
        ))
    }),
    decidesAt: ["postq"]
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
  Effect.map(
    Effect.forEach(keys, (k) =>
      Effect.try({
        try: () => readKey(k.domain.toLowerCase(), k.selector, k.key),
        catch: (error) => new DkimKeyError({ file: k.key, reason: describe(error) })
      })),
    (loaded) => new Map(loaded.map((key) => [key.domain, key] as const))
  )
