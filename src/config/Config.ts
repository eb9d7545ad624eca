/**
 * Postern's configuration: the schema of `postern.config.ts`, its defaults, loading and the
 * Config service.
 *
 * An administrator writes a TypeScript module whose default export is `defineConfig({...})`
 * (or a plain object); Node loads it natively. Everything is validated at start: a wrong value
 * stops the start with one line per problem naming the file, the field path, the value and what
 * was expected, e.g. `postern.config.ts: limits.messageSize: expected a positive integer, got -5`.
 *
 * The input form ({@link ConfigInput}) may leave out anything that has a default; the decoded
 * form ({@link ConfigShape}) has every field, durations in milliseconds, absolute paths and a
 * number of workers.
 */
import * as NodeFs from "node:fs"
import * as NodeModule from "node:module"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as NodeUrl from "node:url"
import { Context, Duration as EffectDuration, Effect, Formatter, Layer, Result, Schema, SchemaAST, SchemaIssue, SchemaTransformation } from "effect"
import { IpNetwork } from "effect/net"
import * as Event from "../log/Event.ts"
import * as Network from "../policy/Network.ts"
import * as Policy from "../policy/Policy.ts"
import * as Rule from "../policy/Rule.ts"
import type * as TlsSettings from "../tls/TlsSettings.ts"
import { defaultProtocol } from "../tls/TlsSettings.ts"
import * as Duration from "./Duration.ts"

// ---------------------------------------------------------------------------------------------
// Field schemas

const integer = (expected: string, accept: (n: number) => boolean) =>
  Schema.Number.annotate({ expected }).check(
    Schema.makeFilter((n: number) => Number.isInteger(n) && accept(n), { expected })
  )

const PositiveInt = integer("a positive integer", (n) => n > 0)
const NonNegativeInt = integer("a non-negative integer", (n) => n >= 0)
const Port = integer("an integer from 1 to 65535", (n) => n >= 1 && n <= 65535)

const text = (expected: string, accept: (s: string) => boolean) =>
  Schema.String.annotate({ expected }).check(Schema.makeFilter(accept, { expected }))

// Labels of letters (any script, for internationalised names), digits, hyphens and underscores.
const domainPattern = /^(?=.{1,253}$)[\p{L}\p{N}_](?:[\p{L}\p{N}_-]{0,61}[\p{L}\p{N}_])?(?:\.[\p{L}\p{N}_](?:[\p{L}\p{N}_-]{0,61}[\p{L}\p{N}_])?)*$/u

const Hostname = text("a host name such as \"mx.example.org\"", (s) => domainPattern.test(s))

const domainExpected = "a domain name such as \"example.org\""

// Checked before lower-casing, so that it is reported along with every other bad value.
const Domain = text(domainExpected, (s) => domainPattern.test(s)).pipe(
  Schema.decodeTo(Schema.String, SchemaTransformation.toLowerCase())
)

// A local part as RCPT TO carries it, unquoted: printable, no "@", at most 64 octets.
const localPartExpected = "a local part such as \"postmaster\" (no \"@\", no spaces, at most 64 bytes)"
const LocalPart = text(
  localPartExpected,
  (s) => /^[^\s@\p{Cc}]+$/u.test(s) && new TextEncoder().encode(s).length <= 64
).pipe(Schema.decodeTo(Schema.String, SchemaTransformation.toLowerCase()))

const PathString = text("a non-empty path", (s) => s.length > 0 && !s.includes("\0"))

const Address = text("an IP address or host name to listen on", (s) => s.length > 0 && !/\s/.test(s))

const cidrExpected = "a network in CIDR notation such as \"10.0.0.0/8\" or \"2001:db8::/32\""

const withPrefix = (input: string): string =>
  input.includes("/") ? input : `${input}/${input.includes(":") ? 128 : 32}`

/** A trusted network: CIDR, or a single address meaning /32 or /128. Decodes to canonical CIDR. */
const Cidr = Schema.String.annotate({ expected: cidrExpected })
  .check(
    Schema.makeFilter((input: string, _ast, options) => {
      const parsed = IpNetwork.fromString(withPrefix(input))
      return Result.isSuccess(parsed) ||
        new SchemaIssue.InvalidValue({ expected: `${cidrExpected} (${parsed.failure.message})` }, input, options)
    })
  )
  .pipe(
    Schema.decodeTo(
      Schema.String,
      SchemaTransformation.transform<string, string>({
        decode: (input) => Result.match(IpNetwork.fromString(withPrefix(input)), {
          onSuccess: IpNetwork.format,
          onFailure: () => input
        }),
        encode: (network) => network
      })
    )
  )

const Role = Event.Role.annotate({ expected: "one of \"smtp\", \"submission\", \"submissions\"" })

const Transport = Schema.Literals(["maildir", "discard"]).annotate({ expected: "one of \"maildir\", \"discard\"" })

const FsyncPolicy = Schema.Literals(["always", "interval", "never"]).annotate({
  expected: "one of \"always\", \"interval\", \"never\""
})

const workersExpected = "a positive integer or \"auto\""
const Workers = Schema.Union([Schema.Literal("auto"), integer(workersExpected, (n) => n > 0)]).annotate({
  expected: workersExpected
})

const Bool = Schema.Boolean.annotate({ expected: "true or false" })

/** Decoding default for a key left out; the default is written in the input form. */
const orDefault = <S extends Schema.Constraint>(schema: S, value: S["Encoded"]) =>
  Schema.withDecodingDefaultKey<S>(Effect.succeed(value))(schema)

const nonEmptyArray = (what: string) =>
  Schema.makeFilter((items: ReadonlyArray<unknown>) => items.length > 0 || `expected at least one ${what}, got none`)

/** Reports every later occurrence of a key, pointing at it and at the first one. */
const uniqueBy = <A>(what: string, key: (a: A) => string) =>
  Schema.makeFilter((items: ReadonlyArray<A>) => {
    const seen = new Map<string, number>()
    const issues: Array<Schema.FilterIssue> = []
    items.forEach((item, index) => {
      const k = key(item)
      const first = seen.get(k)
      if (first === undefined) seen.set(k, index)
      else {
        issues.push({
          path: [index],
          issue: `expected a unique ${what}, got ${Formatter.format(k)} again (first at index ${first})`
        })
      }
    })
    return issues
  })

// ---------------------------------------------------------------------------------------------
// Sections

const ProxyProtocol = Schema.Struct({
  /** Peers allowed to send a PROXY header; anyone else sending one is refused. */
  trustedNetworks: Schema.Array(Cidr).annotate({ expected: "a list of networks" }).check(nonEmptyArray("network"))
}).annotate({ expected: "an object { trustedNetworks }" })

const SecurityLevel = Schema.Literals(["none", "may", "encrypt"]).annotate({
  expected: "one of \"none\", \"may\", \"encrypt\""
})

const Listener = Schema.Struct({
  address: orDefault(Address, "127.0.0.1"),
  port: Port,
  role: Role,
  /** STARTTLS: "none", "may" (the default for smtp), "encrypt" (the default for submission). Ignored for submissions (always TLS). */
  tls: Schema.optionalKey(SecurityLevel),
  /** SMTP AUTH on this listener: by default on submission and submissions, off on smtp. */
  auth: Schema.optionalKey(Bool),
  proxyProtocol: Schema.optionalKey(ProxyProtocol)
}).annotate({ expected: "a listener { address?, port, role, tls?, auth?, proxyProtocol? }" })

const LocalDomain = Schema.Struct({
  domain: Domain,
  users: Schema.Union([
    Schema.Literal("*"),
    Schema.Array(LocalPart).check(uniqueBy<string>("user", (u) => u))
  ]).annotate({ expected: "\"*\" or a list of local parts" }),
  transport: orDefault(Transport, "maildir")
}).annotate({ expected: "a local domain { domain, users, transport? }" })

const Limits = Schema.Struct({
  messageSize: orDefault(PositiveInt, 10_240_000),
  recipients: orDefault(PositiveInt, 100),
  errors: orDefault(PositiveInt, 10),
  connections: orDefault(PositiveInt, 20_000),
  connectionsPerClient: orDefault(PositiveInt, 200),
  lineLength: orDefault(integer("an integer of at least 512", (n) => n >= 512), 512),
  lineDiscard: orDefault(NonNegativeInt, 65_536)
}).annotate({ expected: "an object of limits" })

const Timeouts = Schema.Struct({
  command: orDefault(Duration.PositiveMillis, "5 minutes"),
  dataBlock: orDefault(Duration.PositiveMillis, "3 minutes"),
  dataEnd: orDefault(Duration.PositiveMillis, "10 minutes"),
  shutdownGrace: orDefault(Duration.Millis, "30s"),
  deliveryRetry: orDefault(Duration.PositiveMillis, "5 minutes")
}).annotate({ expected: "an object of timeouts" })

const MiB = 1024 * 1024

const Log = Schema.Struct({
  directory: Schema.optionalKey(PathString),
  fsync: orDefault(FsyncPolicy, "interval"),
  fsyncInterval: orDefault(Duration.PositiveMillis, "10ms"),
  rotateSize: orDefault(PositiveInt, 64 * MiB)
}).annotate({ expected: "an object of event log settings" })

const Spool = Schema.Struct({
  directory: Schema.optionalKey(PathString),
  segmentSize: orDefault(PositiveInt, 64 * MiB)
}).annotate({ expected: "an object of spool settings" })

const TlsVersion = Schema.Literals(["TLSv1.2", "TLSv1.3"]).annotate({
  expected: "\"TLSv1.2\" or \"TLSv1.3\" (older versions are never offered)"
})

const NonEmptyText = (what: string) => text(what, (s) => s.trim().length > 0)

const ServerName = text(
  "a server name such as \"mail.example.org\" or a wildcard such as \"*.example.org\"",
  (s) => domainPattern.test(s.startsWith("*.") ? s.slice(2) : s)
).pipe(Schema.decodeTo(Schema.String, SchemaTransformation.toLowerCase()))

/**
 * What a domain may override: the protocol versions. Node takes only the certificate from the
 * context chosen by SNI (the ciphers, groups and cipher order of the handshake are the
 * server's), so per-domain ciphers would be settings that silently do nothing.
 */
const protocolFields = {
  minVersion: Schema.optionalKey(TlsVersion),
  maxVersion: Schema.optionalKey(TlsVersion)
}

const versionOrder = (v: TlsSettings.TlsVersion): number => (v === "TLSv1.2" ? 2 : 3)

const versionsInOrder = Schema.makeFilter((p: { readonly minVersion?: TlsSettings.TlsVersion; readonly maxVersion?: TlsSettings.TlsVersion }) =>
  p.minVersion === undefined || p.maxVersion === undefined || versionOrder(p.minVersion) <= versionOrder(p.maxVersion) ||
  `expected minVersion at most maxVersion, got ${p.minVersion} > ${p.maxVersion}`
)

const DomainTls = Schema.Struct({
  names: Schema.Array(ServerName).annotate({ expected: "a list of server names" }).check(nonEmptyArray("name")),
  certificate: PathString,
  key: PathString,
  passphrase: Schema.optionalKey(Schema.String),
  ...protocolFields
}).annotate({ expected: "a domain { names, certificate, key, passphrase?, minVersion?, maxVersion? }" })
  .check(versionsInOrder)

const SessionTickets = Schema.Struct({
  lifetime: orDefault(Duration.PositiveMillis, "2h"),
  rotation: orDefault(Duration.PositiveMillis, "1h")
}).annotate({ expected: "an object { lifetime?, rotation? }" })

const ClientCertificates = Schema.Struct({
  request: orDefault(Bool, false),
  ca: Schema.optionalKey(PathString)
}).annotate({ expected: "an object { request?, ca? }" })

const Tls = Schema.Struct({
  /** The default certificate (PEM chain) and key; without any, a self-signed one is made under the state directory. */
  certificate: Schema.optionalKey(PathString),
  key: Schema.optionalKey(PathString),
  passphrase: Schema.optionalKey(Schema.String),
  domains: orDefault(Schema.Array(DomainTls).annotate({ expected: "a list of domains" }), []),
  minVersion: orDefault(TlsVersion, defaultProtocol.minVersion),
  maxVersion: orDefault(TlsVersion, defaultProtocol.maxVersion),
  ciphers: orDefault(NonEmptyText("an OpenSSL cipher list"), defaultProtocol.ciphers),
  cipherSuites: orDefault(NonEmptyText("TLS 1.3 cipher suites separated by \":\""), defaultProtocol.cipherSuites),
  groups: orDefault(NonEmptyText("key exchange groups separated by \":\""), defaultProtocol.groups),
  preferServerCiphers: orDefault(Bool, defaultProtocol.preferServerCiphers),
  requireSni: orDefault(Bool, false),
  handshakeTimeout: orDefault(Duration.PositiveMillis, "10s"),
  sessionTickets: orDefault(SessionTickets, {}),
  clientCertificates: orDefault(ClientCertificates, {}),
  expiryWarning: orDefault(Duration.Millis, "14 days")
}).annotate({ expected: "an object of TLS settings" })
  .check(
    versionsInOrder,
    // A domain's versions are merged with the server's: check what the merge gives.
    Schema.makeFilter((t: {
      readonly minVersion: TlsSettings.TlsVersion
      readonly maxVersion: TlsSettings.TlsVersion
      readonly domains: ReadonlyArray<{ readonly minVersion?: TlsSettings.TlsVersion; readonly maxVersion?: TlsSettings.TlsVersion }>
    }) =>
      t.domains.flatMap((d, index) => {
        const min = d.minVersion ?? t.minVersion
        const max = d.maxVersion ?? t.maxVersion
        return versionOrder(min) <= versionOrder(max) ? [] : [{
          path: ["domains", index],
          issue: `expected minVersion at most maxVersion once merged with the server's, got ${min} > ${max}`
        }]
      })
    ),
    Schema.makeFilter((t: { readonly certificate?: string; readonly key?: string }) =>
      (t.certificate === undefined) === (t.key === undefined) ||
      "expected both certificate and key, or neither"
    ),
    Schema.makeFilter((t: { readonly clientCertificates: { readonly request: boolean; readonly ca?: string } }) =>
      !t.clientCertificates.request || t.clientCertificates.ca !== undefined ||
      "expected clientCertificates.ca (the CA file to verify client certificates with) when clientCertificates.request is true"
    )
  )

const isRule = (u: unknown): u is Rule.Rule =>
  typeof u === "object" && u !== null && "name" in u && typeof u.name === "string" && u.name !== "" &&
  "evaluate" in u && typeof u.evaluate === "function"

const RuleSchema = Schema.declare(isRule, { expected: "a rule made with rule(name, (context) => verdict)" })

const StageRules = Schema.Array(RuleSchema).annotate({ expected: "a list of rules" }).check(
  uniqueBy<Rule.Rule>("rule name", (r) => r.name)
)

const StageDefault = Schema.Literals(["accept", "deny", "tempfail"]).annotate({
  expected: "\"accept\", \"deny\" or \"tempfail\""
})

const RulesByStage = Schema.Struct({
  connect: Schema.optionalKey(StageRules),
  helo: Schema.optionalKey(StageRules),
  auth: Schema.optionalKey(StageRules),
  mail: Schema.optionalKey(StageRules),
  rcpt: Schema.optionalKey(StageRules),
  data: Schema.optionalKey(StageRules),
  postq: Schema.optionalKey(StageRules),
  delivery: Schema.optionalKey(StageRules)
}).annotate({ expected: "an object of rule lists by stage (connect, helo, auth, mail, rcpt, data, postq, delivery)" })

const DefaultsByStage = Schema.Struct({
  connect: orDefault(StageDefault, "accept"),
  helo: orDefault(StageDefault, "accept"),
  auth: orDefault(StageDefault, "accept"),
  mail: orDefault(StageDefault, "accept"),
  rcpt: orDefault(StageDefault, "accept"),
  data: orDefault(StageDefault, "accept"),
  postq: orDefault(StageDefault, "accept"),
  delivery: orDefault(StageDefault, "accept")
}).annotate({ expected: "an object of defaults by stage" })

const PolicySection = Schema.Struct({
  rules: orDefault(RulesByStage, {}),
  defaults: orDefault(DefaultsByStage, {}),
  ruleTimeout: orDefault(Duration.PositiveMillis, "5s"),
  /** How much of a message's body rules see, in bytes (Postfix's body_checks_size_limit). */
  bodyLimit: orDefault(NonNegativeInt, Policy.defaultBodyLimit),
  /** A second rule set evaluated beside the live one, recorded (ShadowDecided), never enforced. */
  shadow: Schema.optionalKey(
    Schema.Struct({ rules: orDefault(RulesByStage, {}), defaults: orDefault(DefaultsByStage, {}) })
      .annotate({ expected: "an object { rules?, defaults? }" })
  )
}).annotate({ expected: "an object { rules?, defaults?, ruleTimeout?, bodyLimit?, shadow? }" })

const SpfSection = Schema.Struct({
  /** Check the sender's SPF at MAIL (ctx.spf, the spf() rule, a Received-SPF header). */
  check: orDefault(Bool, false),
  /** With check: also check the HELO identity at MAIL (RFC 7208 2.3; ctx.spfHelo), as Postfix's policyd-spf does. */
  helo: orDefault(Bool, true),
  /** The longest one check may take; past it the result is temperror. */
  timeout: orDefault(Duration.PositiveMillis, "10s")
}).annotate({ expected: "an object { check?, helo?, timeout? }" })

/** "192.0.2.53", "192.0.2.53:5353", "2001:db8::53" or "[2001:db8::53]:5353": an address, not a name. */
const nameServerPattern = /^(?:\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?|([0-9A-Fa-f:]*:[0-9A-Fa-f:.]*))$/
const NameServer = text("a name server address such as \"192.0.2.53\" or \"[2001:db8::53]:5353\" (an address, not a name)", (s) => {
  const match = nameServerPattern.exec(s)
  if (match === null) return false
  const host = match[1] ?? match[3] ?? match[5] ?? ""
  const port = Number(match[2] ?? match[4] ?? "53")
  return Network.parseAddress(host).ok && port >= 1 && port <= 65535
})

const DkimSection = Schema.Struct({
  /**
   * Verify DKIM signatures, validate ARC chains and evaluate DMARC (with SPF) of each message at
   * the data stage: ctx.dkim, ctx.arc and ctx.dmarc for rules, the dkimVerify() and dmarc()
   * rules, an Authentication-Results field.
   */
  verify: orDefault(Bool, false),
  /**
   * Keys to sign with: the message of an authenticated client whose sender and From are in
   * `domain` is signed with its key (`postern dkim keygen` makes one).
   */
  sign: orDefault(
    Schema.Array(
      Schema.Struct({ domain: Domain, selector: NonEmptyText("a DKIM selector"), key: PathString })
        .annotate({ expected: "a signing key { domain, selector, key }" })
    ).annotate({ expected: "a list of signing keys" }).check(
      uniqueBy<{ readonly domain: string }>("domain", (k) => k.domain.toLowerCase())
    ),
    []
  )
}).annotate({ expected: "an object { verify?, sign? }" })

const DnsSection = Schema.Struct({
  /** Name servers for policy checks ("192.0.2.53", "[2001:db8::53]:5353"); default the system's. */
  servers: orDefault(Schema.Array(NameServer).annotate({ expected: "a list of name servers" }), []),
  /** How long one query may take. */
  timeout: orDefault(Duration.PositiveMillis, "5s")
}).annotate({ expected: "an object { servers?, timeout? }" })

const AuthSection = Schema.Struct({
  /** `postern user add|passwd|remove --file` manages it; default `<stateDirectory>/users`. */
  usersFile: Schema.optionalKey(PathString),
  /** Offer and accept AUTH before TLS too (credentials in the clear). Default false. */
  allowPlaintext: orDefault(Bool, false),
  /** Failed attempts in one session before it is closed (421 4.7.0). */
  maxFailures: orDefault(PositiveInt, 3),
  /** The wait before a 535, doubled after each further failure of the session (at most 30 s). */
  failureDelay: orDefault(Duration.Millis, "1s")
}).annotate({ expected: "an object { usersFile?, allowPlaintext?, maxFailures?, failureDelay? }" })

const defaultListeners: ReadonlyArray<typeof Listener.Encoded> = [
  { address: "127.0.0.1", port: 2525, role: "smtp" },
  { address: "127.0.0.1", port: 2587, role: "submission" },
  { address: "127.0.0.1", port: 2465, role: "submissions" }
]

/** The configuration file's schema, before paths are resolved and machine defaults applied. */
export const ConfigSchema = Schema.Struct({
  hostname: Schema.optionalKey(Hostname),
  listeners: orDefault(
    Schema.Array(Listener).annotate({ expected: "a list of listeners" }).check(
      nonEmptyArray("listener"),
      uniqueBy<typeof Listener.Type>("address and port", (l) => `${l.address.toLowerCase()}:${l.port}`)
    ),
    defaultListeners
  ),
  stateDirectory: orDefault(PathString, "./var"),
  maildirRoot: Schema.optionalKey(PathString),
  localDomains: orDefault(
    Schema.Array(LocalDomain).annotate({ expected: "a list of local domains" }).check(
      uniqueBy<typeof LocalDomain.Type>("domain", (d) => d.domain)
    ),
    [{ domain: "localhost", users: "*", transport: "maildir" }]
  ),
  limits: orDefault(Limits, {}),
  timeouts: orDefault(Timeouts, {}),
  workers: orDefault(Workers, "auto"),
  ioThreadNice: orDefault(integer("an integer from 0 to 19", (n) => n >= 0 && n <= 19), 10),
  log: orDefault(Log, {}),
  spool: orDefault(Spool, {}),
  tls: orDefault(Tls, {}),
  reverseDns: orDefault(Bool, false),
  policy: orDefault(PolicySection, {}),
  auth: orDefault(AuthSection, {}),
  spf: orDefault(SpfSection, {}),
  dkim: orDefault(DkimSection, {}),
  dns: orDefault(DnsSection, {})
}).annotate({ expected: "an object (the configuration), as `export default defineConfig({ ... })`" })

// ---------------------------------------------------------------------------------------------
// Types

/** What `defineConfig` accepts: every setting with a default may be left out. */
export type ConfigInput = typeof ConfigSchema.Encoded

/** One listening socket, with its TLS level resolved from its role. */
export interface Listener {
  readonly address: string
  readonly port: number
  readonly role: Event.Role
  /** "implicit" for submissions; "may" or "encrypt" by default for smtp and submission. */
  readonly security: Event.Security
  /** Offers SMTP AUTH (after TLS unless `auth.allowPlaintext`). */
  readonly auth: boolean
  readonly proxyProtocol?: { readonly trustedNetworks: ReadonlyArray<string> }
}

/** TLS: the settings, and where a self-signed certificate is kept when none is configured. */
export interface TlsConfig {
  readonly settings: TlsSettings.TlsSettings
  /** Set when no certificate is configured at all: the directory of the generated one. */
  readonly selfSignedDirectory: string | undefined
}

/** Size and count limits. */
export type Limits = typeof Limits.Type

/** Timeouts in milliseconds. */
export type Timeouts = typeof Timeouts.Type

/** The event log's settings, with an absolute directory. */
export interface LogSettings {
  readonly directory: string
  readonly fsync: "always" | "interval" | "never"
  readonly fsyncInterval: number
  readonly rotateSize: number
}

/** The spool's settings, with an absolute directory. */
export interface SpoolSettings {
  readonly directory: string
  readonly segmentSize: number
}

/**
 * The decoded configuration: every field present, durations in milliseconds, paths absolute,
 * workers a number. (Named `ConfigShape` because `Config` is the service class.)
 */
export interface ConfigShape {
  readonly hostname: string
  readonly listeners: ReadonlyArray<Listener>
  readonly stateDirectory: string
  readonly maildirRoot: string
  readonly localDomains: ReadonlyArray<Event.LocalDomain>
  readonly limits: Limits
  readonly timeouts: Timeouts
  readonly workers: number
  /** The nice value each worker gives its I/O thread pool (0: left as it is). */
  readonly ioThreadNice: number
  readonly log: LogSettings
  readonly spool: SpoolSettings
  readonly tls: TlsConfig
  readonly reverseDns: boolean
  /**
   * The rules. Functions: they do not survive `toPrimaryJson`, so workers read them from the
   * file themselves (`loadPolicy`).
   */
  readonly policy: PolicySettings
  readonly auth: AuthSettings
  readonly spf: { readonly check: boolean; readonly helo: boolean; readonly timeout: number }
  readonly dkim: {
    readonly verify: boolean
    /** Key files resolved against the configuration file's directory. */
    readonly sign: ReadonlyArray<{ readonly domain: string; readonly selector: string; readonly key: string }>
  }
  readonly dns: { readonly servers: ReadonlyArray<string>; readonly timeout: number }
}

export interface AuthSettings {
  readonly usersFile: string
  readonly allowPlaintext: boolean
  readonly maxFailures: number
  /** Milliseconds. */
  readonly failureDelay: number
}

export interface PolicySettings {
  readonly rules: Policy.RuleSet["rules"]
  readonly defaults: Policy.RuleSet["defaults"]
  /** Milliseconds. */
  readonly ruleTimeout: number
  /** Bytes of the body rules see. */
  readonly bodyLimit: number
  readonly shadow?: { readonly rules: Policy.RuleSet["rules"]; readonly defaults: Policy.RuleSet["defaults"] }
}

// ---------------------------------------------------------------------------------------------
// Errors

/** The configuration could not be loaded or is invalid; `issues` has one line per problem. */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  /** The file, or `embeddedSource` for the built-in default. */
  source: Schema.String,
  issues: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.issues.map((issue) => `${this.source}: ${issue}`).join("\n")
  }
}

/** The source named in errors and summaries when no file is given. */
export const embeddedSource = "(embedded default configuration)"

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (out, key) =>
      typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`,
    ""
  )

const got = (issue: SchemaIssue.Issue): string =>
  SchemaIssue.hasInput(issue) ? `, got ${Formatter.format(issue.input)}` : ""

const leafHook: SchemaIssue.LeafHook = (issue) => {
  switch (issue._tag) {
    case "MissingKey":
      return "required but missing"
    case "UnexpectedKey": {
      const known = SchemaAST.isObjects(issue.ast)
        ? issue.ast.propertySignatures.map((p) => String(p.name)).join(", ")
        : ""
      return known === "" ? "unknown setting" : `unknown setting; expected one of: ${known}`
    }
    case "InvalidType": {
      const expected = issue.ast.annotations?.["expected"]
      if (typeof expected === "string") return `expected ${expected}${got(issue)}`
      return SchemaIssue.defaultLeafHook(issue)
    }
    default:
      return SchemaIssue.defaultLeafHook(issue)
  }
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1({ leafHook })

/** One line per problem: `path: expected ..., got ...` (the source is added by ConfigError). */
export const formatIssue = (issue: SchemaIssue.Issue): Array<string> =>
  formatter(issue).issues.map(({ message, path }) => {
    const text = /^[A-Z][a-z]/.test(message) ? message[0]?.toLowerCase() + message.slice(1) : message
    const where = formatPath((path ?? []).map((p) => (typeof p === "object" ? p.key : p)))
    return where === "" ? text : `${where}: ${text}`
  })

// ---------------------------------------------------------------------------------------------
// Decoding and loading

const finish = (parsed: typeof ConfigSchema.Type, baseDirectory: string): ConfigShape => {
  const resolve = (path: string) => NodePath.resolve(baseDirectory, path)
  const stateDirectory = resolve(parsed.stateDirectory)
  const underState = (path: string | undefined, name: string) =>
    path === undefined ? NodePath.join(stateDirectory, name) : resolve(path)
  const tls = parsed.tls
  const protocol: TlsSettings.ProtocolSettings = {
    minVersion: tls.minVersion,
    maxVersion: tls.maxVersion,
    ciphers: tls.ciphers,
    cipherSuites: tls.cipherSuites,
    groups: tls.groups,
    preferServerCiphers: tls.preferServerCiphers
  }
  const filesOf = (f: { readonly certificate: string; readonly key: string; readonly passphrase?: string }) => ({
    certificate: resolve(f.certificate),
    key: resolve(f.key),
    ...(f.passphrase === undefined ? {} : { passphrase: f.passphrase })
  })
  const configured = tls.certificate !== undefined && tls.key !== undefined
    ? filesOf({ certificate: tls.certificate, key: tls.key, ...(tls.passphrase === undefined ? {} : { passphrase: tls.passphrase }) })
    : undefined
  const selfSigned = configured === undefined && tls.domains.length === 0
  return {
    hostname: parsed.hostname ?? NodeOs.hostname(),
    listeners: parsed.listeners.map((l) => ({
      address: l.address,
      port: l.port,
      role: l.role,
      security: l.role === "submissions" ? "implicit" : l.tls ?? (l.role === "smtp" ? "may" : "encrypt"),
      auth: l.auth ?? l.role !== "smtp",
      ...(l.proxyProtocol === undefined ? {} : { proxyProtocol: l.proxyProtocol })
    })),
    stateDirectory,
    maildirRoot: underState(parsed.maildirRoot, "mail"),
    localDomains: parsed.localDomains,
    limits: parsed.limits,
    timeouts: parsed.timeouts,
    workers: parsed.workers === "auto" ? NodeOs.availableParallelism() : parsed.workers,
    ioThreadNice: parsed.ioThreadNice,
    log: {
      directory: underState(parsed.log.directory, "log"),
      fsync: parsed.log.fsync,
      fsyncInterval: parsed.log.fsyncInterval,
      rotateSize: parsed.log.rotateSize
    },
    spool: {
      directory: underState(parsed.spool.directory, "spool"),
      segmentSize: parsed.spool.segmentSize
    },
    tls: {
      settings: {
        defaultCertificate: configured,
        domains: tls.domains.map((d) => ({
          names: d.names,
          files: filesOf(d),
          protocol: {
            minVersion: d.minVersion ?? protocol.minVersion,
            maxVersion: d.maxVersion ?? protocol.maxVersion,
            ciphers: protocol.ciphers,
            cipherSuites: protocol.cipherSuites,
            groups: protocol.groups,
            preferServerCiphers: protocol.preferServerCiphers
          }
        })),
        protocol,
        requireSni: tls.requireSni,
        handshakeTimeout: tls.handshakeTimeout,
        sessionTickets: tls.sessionTickets,
        clientCertificates: {
          request: tls.clientCertificates.request,
          ...(tls.clientCertificates.ca === undefined ? {} : { ca: resolve(tls.clientCertificates.ca) })
        },
        expiryWarning: tls.expiryWarning
      },
      selfSignedDirectory: selfSigned ? NodePath.join(stateDirectory, "tls") : undefined
    },
    reverseDns: parsed.reverseDns,
    policy: parsed.policy,
    spf: parsed.spf,
    dkim: { verify: parsed.dkim.verify, sign: parsed.dkim.sign.map((k) => ({ ...k, key: resolve(k.key) })) },
    dns: parsed.dns,
    auth: {
      usersFile: underState(parsed.auth.usersFile, "users"),
      allowPlaintext: parsed.auth.allowPlaintext,
      maxFailures: parsed.auth.maxFailures,
      failureDelay: parsed.auth.failureDelay
    }
  }
}

const decodeSchema = Schema.decodeUnknownEffect(ConfigSchema)

/**
 * Validates a configuration value and completes it. `source` names it in errors; relative
 * paths resolve against `baseDirectory` (the config file's directory; the working directory by
 * default).
 */
export const decode = (
  input: unknown,
  source: string,
  baseDirectory: string = process.cwd()
): Effect.Effect<ConfigShape, ConfigError> =>
  decodeSchema(input, { errors: "all", reportInput: true, onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => new ConfigError({ source, issues: formatIssue(error.issue) })),
    Effect.map((parsed) => finish(parsed, baseDirectory))
  )

/**
 * The configuration the primary validated, as it hands it to its workers (JSON of a decoded
 * `ConfigShape`): a restarted worker runs what the others run, even if the file changed since.
 * The decoded form is not the file's form (paths resolved, listener security filled in), so it
 * is not decoded again.
 */
export const toPrimaryJson = (config: ConfigShape): string => {
  const { shadow: _shadow, ...policy } = config.policy
  return JSON.stringify({ ...config, policy: { ...policy, rules: {} } })
}

export const fromPrimary = (json: string): ConfigShape => JSON.parse(json) as ConfigShape

/** Identity, for typing: `export default defineConfig({ ... })` gets completion and checks. */
export const defineConfig = (input: ConfigInput): ConfigInput => input

/** The embedded default configuration, resolved against the working directory at module load. */
export const defaults: ConfigShape = Effect.runSync(decode({}, embeddedSource))

// Each load imports a fresh copy, so a reload sees the file as it is now.
let generation = 0

/**
 * The package name a configuration file imports `defineConfig` from. Node will not strip types
 * under node_modules, and a file outside any project cannot resolve it at all, so the name is
 * mapped to the running Postern's own entry point.
 */
export const packageName = "postern"

let packageHookInstalled = false

const installPackageHook = (): void => {
  if (packageHookInstalled) return
  packageHookInstalled = true
  const entry = new URL("../index.ts", import.meta.url).href
  NodeModule.registerHooks({
    resolve: (specifier, context, nextResolve) =>
      specifier === packageName
        ? { url: entry, shortCircuit: true }
        : nextResolve(specifier, context)
  })
}

// Node puts the location of a syntax error before the error in the stack: "file:///x.ts:3\n<line>".
const syntaxErrorLocation = /^file:\/\/[^\n]*:(\d+)\n([^\n]*)/

const describeLoadFailure = (cause: unknown): string => {
  if (!(cause instanceof Error)) return String(cause)
  const location = syntaxErrorLocation.exec(cause.stack ?? "")
  const where = location === null ? "" : ` (line ${location[1]}: ${location[2]?.trim()})`
  return `${cause.name}: ${cause.message}${where}`
}

const importFile = (file: string): Effect.Effect<unknown, ConfigError> =>
  Effect.gen(function*() {
    const absolute = NodePath.resolve(file)
    if (!NodeFs.existsSync(absolute)) {
      return yield* new ConfigError({ source: file, issues: [`no such file: ${absolute}`] })
    }
    installPackageHook()
    generation += 1
    const url = `${NodeUrl.pathToFileURL(absolute).href}?generation=${generation}`
    const module: unknown = yield* Effect.tryPromise({
      try: () => import(url),
      catch: (cause) => new ConfigError({ source: file, issues: [`cannot be loaded: ${describeLoadFailure(cause)}`] })
    })
    if (typeof module !== "object" || module === null || !("default" in module) || module.default === undefined) {
      return yield* new ConfigError({
        source: file,
        issues: ["has no default export; end it with `export default defineConfig({ ... })`"]
      })
    }
    return module.default
  })

/**
 * Loads and validates a configuration file, or the embedded default when `file` is undefined.
 * Relative paths in the file resolve against the file's directory.
 */
export const load = (file: string | undefined): Effect.Effect<ConfigShape, ConfigError> =>
  file === undefined
    ? decode({}, embeddedSource)
    : importFile(file).pipe(
      Effect.flatMap((input) => decode(input, file, NodePath.dirname(NodePath.resolve(file))))
    )

/**
 * The rules of the configuration file (the embedded default's when there is none), for a
 * worker: rules are functions, which the primary cannot hand over (see `toPrimaryJson`).
 */
export const loadPolicy = (file: string | undefined): Effect.Effect<PolicySettings, ConfigError> =>
  Effect.map(load(file), (config) => config.policy)

/** The Policy's rule set from the configuration's policy section. */
export const ruleSet = (policy: PolicySettings): Policy.RuleSet => ({
  rules: policy.rules,
  defaults: policy.defaults,
  ruleTimeout: EffectDuration.millis(policy.ruleTimeout),
  bodyLimit: policy.bodyLimit
})

/** The shadow rule set, if the policy section has one. */
export const shadowRuleSet = (policy: PolicySettings): Policy.RuleSet | undefined =>
  policy.shadow === undefined ? undefined : ruleSet({ ...policy, ...policy.shadow })

/** The settings the session machine's replies depend on, as recorded in the event log. */
export const machineSettings = (config: ConfigShape): Event.MachineSettings => ({
  hostname: config.hostname,
  maxMessageSize: config.limits.messageSize,
  maxRecipients: config.limits.recipients,
  maxErrors: config.limits.errors,
  localDomains: config.localDomains,
  authPlaintext: config.auth.allowPlaintext,
  authMaxFailures: config.auth.maxFailures
})

const formatMillis = (ms: number): string =>
  ms % 3_600_000 === 0 && ms > 0
    ? `${ms / 3_600_000}h`
    : ms % 60_000 === 0 && ms > 0
    ? `${ms / 60_000}m`
    : ms % 1_000 === 0 && ms > 0
    ? `${ms / 1_000}s`
    : `${ms}ms`

const tlsSummary = (tls: TlsConfig): ReadonlyArray<string> => {
  const s = tls.settings
  const certificate = s.defaultCertificate !== undefined
    ? `  default certificate ${s.defaultCertificate.certificate}`
    : tls.selfSignedDirectory !== undefined
    ? `  default certificate: self-signed, kept in ${tls.selfSignedDirectory}`
    : "  no default certificate: clients must send a configured server name"
  return [
    certificate,
    ...s.domains.map((d) => `  ${d.names.join(", ")}: ${d.files.certificate} (${d.protocol.minVersion}-${d.protocol.maxVersion})`),
    `  ${s.protocol.minVersion} to ${s.protocol.maxVersion}, server cipher order ${s.protocol.preferServerCiphers ? "on" : "off"}, groups ${s.protocol.groups}`,
    `  handshake timeout ${formatMillis(s.handshakeTimeout)}, SNI ${s.requireSni ? "required" : "optional"}, session tickets for ${
      formatMillis(s.sessionTickets.lifetime)
    } (key changes every ${formatMillis(s.sessionTickets.rotation)})`,
    `  client certificates ${s.clientCertificates.request ? `requested (CA ${s.clientCertificates.ca ?? "?"})` : "not requested"}`
  ]
}

/** A human summary of a decoded configuration: listeners, domains, paths, limits, timeouts. */
export const summary = (config: ConfigShape, source: string): string => {
  const listeners = config.listeners.map((l) => {
    const proxy = l.proxyProtocol === undefined
      ? ""
      : `  PROXY protocol from ${l.proxyProtocol.trustedNetworks.join(", ")}`
    const tls = l.security === "implicit" ? "implicit TLS" : `STARTTLS ${l.security}`
    return `  ${l.role.padEnd(12)} ${`${l.address}:${l.port}`.padEnd(22)} ${tls}${proxy}`
  })
  const domains = config.localDomains.length === 0
    ? ["  (none)"]
    : config.localDomains.map((d) =>
      `  ${d.domain.padEnd(24)} ${d.users === "*" ? "all users" : d.users.join(", ")} -> ${d.transport}`
    )
  const { limits, timeouts } = config
  return [
    `configuration: ${source}`,
    `hostname: ${config.hostname}`,
    `workers: ${config.workers}, ioThreadNice ${config.ioThreadNice}`,
    "listeners:",
    ...listeners,
    "local domains:",
    ...domains,
    "paths:",
    `  state   ${config.stateDirectory}`,
    `  log     ${config.log.directory} (fsync ${config.log.fsync}${
      config.log.fsync === "interval" ? ` every ${formatMillis(config.log.fsyncInterval)}` : ""
    }, rotate at ${config.log.rotateSize} bytes)`,
    `  spool   ${config.spool.directory} (segments of ${config.spool.segmentSize} bytes)`,
    `  mail    ${config.maildirRoot}`,
    "limits:",
    `  message size ${limits.messageSize} bytes, ${limits.recipients} recipients, ${limits.errors} errors per session`,
    `  ${limits.connections} connections, ${limits.connectionsPerClient} per client`,
    `  line length ${limits.lineLength}, discard up to ${limits.lineDiscard} bytes of a longer line`,
    "timeouts:",
    `  command ${formatMillis(timeouts.command)}, data block ${formatMillis(timeouts.dataBlock)}, data end ${
      formatMillis(timeouts.dataEnd)
    }`,
    `  shutdown grace ${formatMillis(timeouts.shutdownGrace)}, first delivery retry ${
      formatMillis(timeouts.deliveryRetry)
    }`,
    "tls:",
    ...tlsSummary(config.tls),
    `reverse DNS: ${config.reverseDns ? "on" : "off"}`,
    "policy (rules in order; then the stage default):",
    ...policySummary(config.policy)
  ].join("\n")
}


const stageLines = (rules: PolicySettings["rules"], defaults: PolicySettings["defaults"]): Array<string> =>
  Policy.stages.map((stage) => {
    const list = rules[stage] ?? []
    const names = list.length === 0 ? "(no rules)" : list.map((r) => `'${r.name}'`).join(", ")
    const fallback = stage === "rcpt" ? `${defaults[stage]} local recipients, deny relaying` : defaults[stage]
    return `  ${stage.padEnd(8)} ${names} -> ${fallback}`
  })

const policySummary = (policy: PolicySettings): Array<string> => [
  ...stageLines(policy.rules, policy.defaults),
  `  a rule that needs I/O may take ${formatMillis(policy.ruleTimeout)}`,
  `  rules see ${policy.bodyLimit === 0 ? "none" : `up to ${policy.bodyLimit} bytes`} of the body`,
  ...(policy.shadow === undefined
    ? []
    : ["shadow policy (recorded beside the live one, never enforced):", ...stageLines(policy.shadow.rules, policy.shadow.defaults)])
]

/**
 * The verdict a rule gives whatever the context, if it ignores the context (a function of no
 * parameters, `() => accept`) and that verdict ends the stage; undefined otherwise. Such a rule
 * is asked once, here, with no context.
 */
const alwaysDecides = (rule: Rule.Rule): string | undefined => {
  if (rule.evaluate.length !== 0) return undefined
  try {
    const verdict = Rule.asVerdict(Reflect.apply(rule.evaluate, undefined, []))
    return verdict === undefined || verdict._tag === "Next" ? undefined : verdict._tag.toLowerCase()
  } catch {
    return undefined
  }
}

/**
 * What in a valid configuration cannot work as written: rules that never run or never decide,
 * a default that refuses everyone, a rule shared by the live and shadow sets. One line each;
 * printed by `config check` and at start.
 */
export const warnings = (config: ConfigShape): Array<string> => {
  const out: Array<string> = []
  const { policy } = config
  const sets = [["policy.rules", policy.rules], ...(policy.shadow === undefined ? [] : [["policy.shadow.rules", policy.shadow.rules]] as const)] as const
  for (const [path, rules] of sets) {
    if ((rules.auth ?? []).length > 0 && !config.listeners.some((l) => l.auth)) {
      out.push(`${path}.auth: no listener offers AUTH, so these rules never run`)
    }
    for (const stage of Policy.stages) {
      const list = rules[stage] ?? []
      for (const rule of list) {
        for (const needed of rule.requires ?? []) {
          const on = needed === "spf.check"
            ? config.spf.check
            : needed === "spf.helo"
            ? config.spf.check && config.spf.helo
            : config.dkim.verify
          if (!on) out.push(`${path}.${stage}: rule '${rule.name}' never decides: ${needed} is off`)
        }
        if (rule.decidesAt !== undefined && !rule.decidesAt.includes(stage)) {
          out.push(`${path}.${stage}: rule '${rule.name}' never decides here: only at ${rule.decidesAt.join(", ")}`)
        }
      }
      // Each rule is asked at most once: the check runs the administrator's code.
      for (const [index, blocker] of list.slice(0, -1).entries()) {
        const answer = alwaysDecides(blocker)
        if (answer === undefined) continue
        const skipped = list.slice(index + 1).map((r) => `'${r.name}'`).join(", ")
        out.push(`${path}.${stage}: rule '${blocker.name}' always answers ${answer}, so ${skipped} never run`)
        break
      }
    }
  }
  for (const stage of ["connect", "helo"] as const) {
    if (policy.defaults[stage] !== "accept" && (policy.rules[stage] ?? []).length === 0) {
      out.push(`policy.defaults.${stage}: "${policy.defaults[stage]}" with no rules refuses every session`)
    }
  }
  if (policy.shadow !== undefined) {
    const shadowed = new Set(Policy.stages.flatMap((s) => policy.shadow?.rules[s] ?? []))
    for (const stage of Policy.stages) {
      for (const rule of policy.rules[stage] ?? []) {
        if (shadowed.has(rule)) {
          out.push(`policy.shadow: rule '${rule.name}' is also a live rule: its state (rate counts) is shared, so the shadow affects live decisions`)
        }
      }
    }
  }
  return out
}

/** Loads and validates a configuration (as {@link load}) and describes it for a human. */
export const check = (file: string | undefined): Effect.Effect<string, ConfigError> =>
  load(file).pipe(Effect.map((config) => {
    const warned = warnings(config)
    return summary(config, file ?? embeddedSource) + (warned.length === 0 ? "" : `\n${warned.map((w) => `warning: ${w}`).join("\n")}`)
  }))

// ---------------------------------------------------------------------------------------------
// Service

/** The validated configuration in force. */
export class Config extends Context.Service<Config, ConfigShape>()("postern/config/Config") {
  /** Loads `file` (or the embedded default) at layer construction; a bad file fails the layer. */
  static layer(file?: string): Layer.Layer<Config, ConfigError> {
    return Layer.effect(Config, load(file))
  }

  /** A configuration already in hand (tests, or one decoded by the caller). */
  static layerValue(config: ConfigShape): Layer.Layer<Config> {
    return Layer.succeed(Config, config)
  }
}
