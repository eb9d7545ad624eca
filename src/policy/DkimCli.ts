/**
 * `postern dkim keygen --domain D --selector S [--algorithm rsa|ed25519] [--out DIR]`: makes a
 * signing key (RSA-2048 or Ed25519), writes it as `DIR/D.S.key` (mode 0600, never over an
 * existing file), and prints the DNS TXT record to publish and the configuration to add.
 */
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as Fsync from "../log/Fsync.ts"
import * as DkimSign from "./DkimSign.ts"
import { setExitCode } from "../Cli.ts"


/** A TXT record's text as zone-file strings: at most 255 characters each (RFC 1035 3.3.14). */
const zoneStrings = (text: string): string => {
  const parts: Array<string> = []
  for (let i = 0; i < text.length; i += 255) parts.push(`"${text.slice(i, i + 255)}"`)
  return parts.length === 1 ? (parts[0] ?? "\"\"") : `( ${parts.join(" ")} )`
}

const keygen = Command.make(
  "keygen",
  {
    domain: Flag.String("domain").pipe(Flag.withDescription("The signing domain (d=)")),
    selector: Flag.String("selector").pipe(Flag.withDescription("The selector (s=)")),
    algorithm: Flag.String("algorithm").pipe(Flag.withDescription("rsa (RSA-2048, the default) or ed25519"), Flag.optional),
    out: Flag.String("out").pipe(Flag.withDescription("Directory for the key file (default: the current one)"), Flag.optional)
  },
  Effect.fnUntraced(function*(args) {
    const algorithm = Option.getOrElse(args.algorithm, () => "rsa")
    const domain = args.domain.toLowerCase()
    if (algorithm !== "rsa" && algorithm !== "ed25519") {
      yield* Console.error(`postern dkim keygen: --algorithm must be rsa or ed25519, got ${algorithm}`)
      return yield* setExitCode(2)
    }
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/.test(domain) || !/^[A-Za-z0-9._-]+$/.test(args.selector)) {
      yield* Console.error("postern dkim keygen: --domain must be a domain name and --selector letters, digits, '.', '-' or '_'")
      return yield* setExitCode(2)
    }
    const privateKey = algorithm === "rsa"
      ? Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey
      : Crypto.generateKeyPairSync("ed25519").privateKey
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString()
    const file = Path.resolve(Option.getOrElse(args.out, () => "."), `${domain}.${args.selector}.key`)
    const written = yield* Effect.result(Effect.tryPromise(() => Fsync.createFile(file, pem, 0o600)))
    if (written._tag === "Failure") {
      yield* Console.error(`postern dkim keygen: cannot write ${file}: ${String(written.failure.cause)}`)
      return yield* setExitCode(1)
    }
    yield* Console.log(`key written to ${file}`)
    yield* Console.log("publish in DNS:")
    yield* Console.log(`${args.selector}._domainkey.${domain}. IN TXT ${zoneStrings(DkimSign.dnsRecord(pem))}`)
    yield* Console.log("and sign with it (postern.config.ts):")
    yield* Console.log(`  dkim: { sign: [{ domain: ${JSON.stringify(domain)}, selector: ${JSON.stringify(args.selector)}, key: ${JSON.stringify(file)} }] }`)
  })
).pipe(Command.withDescription("Make a DKIM signing key and print the DNS record to publish"))

/** The `dkim` subcommand. */
export const command = Command.make("dkim").pipe(
  Command.withDescription("DKIM signing keys"),
  Command.withSubcommands([keygen])
)
