/**
 * Ready-made rules and the helpers rules are written with: `networks`/`inNetwork` (CIDR,
 * IPv4 and IPv6), `inDomain`, `relay` (vSMTP's check_rcpt_relay, Postfix's
 * permit_mynetworks + permit_sasl_authenticated + reject_unauth_destination), `requireTls` and
 * `rateLimit`, and the verdicts of the sender checks: `spf`, `dkimVerify`, `dmarc`.
 * A malformed network is an error when the configuration loads, never at a session.
 */
import * as Duration from "../config/Duration.ts"
import * as Headers from "../session/Headers.ts"
import * as Network from "./Network.ts"
import * as Policy from "./Policy.ts"
import * as Rule from "./Rule.ts"

/** A set of networks, parsed once. */
export interface Networks {
  readonly texts: ReadonlyArray<string>
  /** The first network (as written) that contains `address`, if any. */
  readonly match: (address: string) => string | undefined
}

/** Parses CIDR networks (`10.0.0.0/8`, `2001:db8::/32`, or a single address); throws on a bad one. */
export const networks = (...texts: ReadonlyArray<string>): Networks => {
  const parsed = Network.parseNetworks(texts)
  if (!parsed.ok) throw new RangeError(`network "${parsed.input}": ${parsed.reason}`)
  const find = Network.matcher(parsed.networks)
  return {
    texts,
    match: (address) => {
      const index = find(address)
      return index < 0 ? undefined : texts[index]
    }
  }
}

/** Whether `address` is in one of `within` (a `networks(...)` value or CIDR texts). */
export const inNetwork = (address: string, within: Networks | ReadonlyArray<string>): boolean =>
  ("match" in within ? within : networks(...within)).match(address) !== undefined

/** A set of domains, lower-cased once. */
export interface Domains {
  readonly names: ReadonlySet<string>
}

export const domains = (...names: ReadonlyArray<string>): Domains => ({ names: new Set(names.map((n) => n.toLowerCase())) })

/**
 * Whether the domain of `address` (`local@domain`, the part after the last `@`) is one of
 * `within`, ignoring case. A `domains(...)` value is the fast form for rules.
 */
export const inDomain = (address: string | undefined, within: Domains | ReadonlyArray<string>): boolean => {
  const at = address?.lastIndexOf("@") ?? -1
  if (address === undefined || at < 0) return false
  const names = "names" in within ? within.names : domains(...within).names
  return names.has(address.slice(at + 1).toLowerCase())
}

export interface RelayOptions {
  /** Clients that may relay anywhere (Postfix's mynetworks). */
  readonly internalNetworks?: ReadonlyArray<string>
  /** Authenticated clients may relay anywhere; default true. */
  readonly authenticated?: boolean
}

/**
 * The anti-relay rule, for the rcpt stage: a recipient in a local domain goes on to the next
 * rule; any other recipient is accepted from an authenticated client or an internal network
 * and refused with `554 5.7.1` for everyone else. Address tricks (`%`, `!`, source routes,
 * quoted `@`) never make a remote recipient local: the domain is the part after the last `@`
 * of the parsed path.
 */
export const relay = (options: RelayOptions = {}): Rule.Rule => {
  const internal = networks(...(options.internalNetworks ?? []))
  const authenticated = options.authenticated ?? true
  const evaluate = (context: Rule.Context): Rule.Verdict => {
    if (context.stage !== "rcpt" || context.recipientIsLocal) return Rule.next
    if (authenticated && context.authenticated !== undefined) {
      return Rule.because(Rule.acceptRelay, { authenticated: context.authenticated })
    }
    const network = internal.match(context.client.address)
    if (network !== undefined) return Rule.because(Rule.acceptRelay, { network })
    return Policy.relayDenied(context.recipient ?? "", { client: context.client.address, recipient: "not in a local domain" })
  }
  return { ...Rule.rule("relay", evaluate), decidesAt: ["rcpt"] }
}

/** The stages from which the session's checks are known: SPF from mail on, the message's from data on. */
const fromMail: ReadonlyArray<Rule.Stage> = ["mail", "rcpt", "data", "postq", "delivery"]
const fromData: ReadonlyArray<Rule.Stage> = [...Rule.messageStages]

export interface RequireTlsOptions {
  /** Clients allowed in plaintext. */
  readonly except?: ReadonlyArray<string>
  /** The refusal; default `530 5.7.0 Must issue a STARTTLS command first` (RFC 3207). */
  readonly verdict?: Rule.Verdict
}

/** Refuses an unencrypted session at the stage it is placed in (vSMTP's "deny unencrypted"). */
export const requireTls = (options: RequireTlsOptions = {}): Rule.Rule => {
  const except = networks(...(options.except ?? []))
  const refusal = options.verdict ?? Rule.deny(530, "5.7.0", "Must issue a STARTTLS command first")
  return Rule.rule("require tls", (context) => {
    if (context.isSecured) return Rule.next
    const network = except.match(context.client.address)
    if (network !== undefined) return Rule.next
    return refusal._tag === "Next" || refusal.because !== undefined ? refusal : Rule.because(refusal, { secured: "no" })
  })
}

export interface SpfOptions {
  /**
   * Which identity decides (vSMTP's check_spf): "mail", the sender (the HELO name for the null
   * sender; default); "helo", the HELO name (RFC 7208 2.3; needs `spf.helo`); "both", the
   * HELO name's result first, then the sender's. Both identities are checked at MAIL.
   */
  readonly identities?: "mail" | "helo" | "both"
  /** The verdict for each SPF result; a result left out goes on to the next rule. */
  readonly on?: { readonly [R in Rule.SpfView["result"]]?: Rule.Verdict }
}

/**
 * The sender's SPF result as a verdict (vSMTP's check_spf, Postfix's policyd-spf). By default
 * `fail` is refused with `550 5.7.23` and `temperror` deferred with `451 4.7.24` (RFC 7372);
 * everything else goes on. Needs `spf.check` on, which makes the session check SPF at MAIL; put
 * it in the mail stage or later.
 */
export const spf = (options: SpfOptions = {}): Rule.Rule => {
  const verdicts: { readonly [R in Rule.SpfView["result"]]?: Rule.Verdict } = {
    fail: Rule.deny(550, "5.7.23", "SPF validation failed"),
    temperror: Rule.tempfail(451, "4.7.24", "SPF validation error; try again later"),
    ...options.on
  }
  const identities = options.identities ?? "mail"
  const judge = (checked: Rule.SpfView | undefined, identity: "helo" | "mail"): Rule.Verdict => {
    if (checked === undefined) return Rule.next
    const verdict = verdicts[checked.result] ?? Rule.next
    return verdict._tag === "Next" ? verdict : Rule.because(verdict, { spf: checked.result, domain: checked.domain, identity })
  }
  return {
    ...Rule.rule("spf", (context) => {
      if (identities === "mail") return judge(context.spf, "mail")
      const helo = judge(context.spfHelo, "helo")
      return identities === "helo" || helo._tag !== "Next" ? helo : judge(context.spf, "mail")
    }),
    // "both" still decides on the sender when the HELO name is not checked.
    requires: identities === "helo" ? ["spf.check", "spf.helo"] : ["spf.check"],
    decidesAt: fromMail
  }
}

export type DkimResult = NonNullable<Rule.Context["dkim"]>[number]["result"]

export interface DkimVerifyOptions {
  /**
   * The verdict for the message's best DKIM result (pass, then temperror, fail, policy,
   * permerror, neutral; "none" for an unsigned message); a result left out goes on.
   */
  readonly on?: { readonly [R in DkimResult]?: Rule.Verdict }
  /** Domains whose mail must carry a passing signature of theirs (by the From domain); otherwise `fail`'s verdict, or 550 5.7.20. */
  readonly required?: ReadonlyArray<string>
}

const dkimOrder: ReadonlyArray<string> = ["pass", "temperror", "fail", "policy", "permerror", "neutral", "none"]

/**
 * The message's DKIM verification (RFC 6376) as a verdict, at data (vSMTP's dkim_verify). A
 * signature that fails is, per RFC 6376 6.1, as good as none, so by default only a temporary
 * error defers (451 4.7.5) and nothing else decides; `on` says otherwise per result, and
 * `required` names domains whose mail must be signed by them (RFC 7372's 5.7.20 when it is
 * not). Needs `dkim.verify` on.
 */
export const dkimVerify = (options: DkimVerifyOptions = {}): Rule.Rule => {
  const verdicts: { readonly [R in DkimResult]?: Rule.Verdict } = {
    temperror: Rule.tempfail(451, "4.7.5", "DKIM verification failed temporarily; try again later"),
    ...options.on
  }
  const required = domains(...(options.required ?? []))
  const unsigned = options.on?.fail ?? Rule.deny(550, "5.7.20", "No passing DKIM signature of the sender's domain")
  const evaluate = (context: Rule.Context): Rule.Verdict => {
    const results = context.dkim
    if (results === undefined) return Rule.next
    // "none" is last in dkimOrder: the best of no results is "none".
    const best = results.reduce<string>(
      (found, r) => (dkimOrder.indexOf(r.result) < dkimOrder.indexOf(found) ? r.result : found),
      "none"
    )
    // The From the verifier read when the header fields rules see have none (DMARC's domain).
    const fromDomain = required.names.size === 0
      ? undefined
      : Headers.addressDomain(context.message?.header("from")) ?? context.dmarc?.domain
    if (fromDomain !== undefined && required.names.has(fromDomain) &&
      !results.some((r) => r.result === "pass" && r.domain.toLowerCase() === fromDomain)) {
      return unsigned._tag === "Next" ? unsigned : Rule.because(unsigned, { dkim: best, required: fromDomain })
    }
    const verdict = verdicts[best] ?? Rule.next
    return verdict._tag === "Next" ? verdict : Rule.because(verdict, { dkim: best })
  }
  return { ...Rule.rule("dkim verify", evaluate), requires: ["dkim.verify"], decidesAt: fromData }
}

export interface DmarcOptions {
  /** The answer to a DMARC fail under p=reject; default `550 5.7.1 DMARC policy of the sender's domain refuses this message`. */
  readonly reject?: Rule.Verdict
  /** The answer to a DMARC fail under p=quarantine; default `quarantine("dmarc")`. */
  readonly quarantine?: Rule.Verdict
  /** The answer to a DMARC temperror; default `451 4.7.1`. */
  readonly temperror?: Rule.Verdict
  /**
   * Forwarders (mailing lists) whose ARC seal you trust (RFC 8617 7.2): a message failing DMARC
   * is let through when its ARC chain passes, one of them sealed the newest set, and that set
   * recorded DMARC passing for the same From domain: mail that was authenticated before they
   * changed it. Needs `dkim.verify` (which validates ARC).
   */
  readonly trustedArcSealers?: ReadonlyArray<string>
}

/**
 * Applies the From domain's DMARC policy (RFC 7489 6.6) at the data stage: a failing message
 * is refused under p=reject and held in the quarantine "dmarc" under p=quarantine. Needs
 * `dkim.verify` on; without a DMARC result it goes on.
 */
export const dmarc = (options: DmarcOptions = {}): Rule.Rule => {
  const reject = options.reject ?? Rule.deny(550, "5.7.1", "DMARC policy of the sender's domain refuses this message")
  const quarantine = options.quarantine ?? Rule.quarantine("dmarc")
  const temperror = options.temperror ?? Rule.tempfail(451, "4.7.1", "DMARC evaluation failed; try again later")
  const trusted = domains(...(options.trustedArcSealers ?? []))
  const evaluate = (context: Rule.Context): Rule.Verdict => {
    const result = context.dmarc
    if (result === undefined) return Rule.next
    const arc = context.arc
    if (
      result.result === "fail" && arc?.result === "pass" && arc.sealer !== undefined && trusted.names.has(arc.sealer) &&
      arc.recorded?.dmarc === "pass" && arc.recorded.from !== undefined &&
      (arc.recorded.from === Headers.addressDomain(context.message?.header("from")) || arc.recorded.from === result.domain)
    ) {
      return Rule.next
    }
    const verdict = result.result === "temperror"
      ? temperror
      : result.result !== "fail"
      ? Rule.next
      : result.policy === "reject"
      ? reject
      : result.policy === "quarantine"
      ? quarantine
      : Rule.next
    return verdict._tag === "Next" ? verdict : Rule.because(verdict, { dmarc: result.result, domain: result.domain, policy: result.policy })
  }
  return { ...Rule.rule("dmarc", evaluate), requires: ["dkim.verify"], decidesAt: fromData }
}

export interface RateLimitOptions {
  /** The rule's name in decisions; default "rate limit". */
  readonly name?: string
  /** How many evaluations a key may pass in one window. */
  readonly limit: number
  /** The window: milliseconds or a duration such as "1m", "1h". */
  readonly per: number | string
  /** What is counted per; default the client's address. */
  readonly key?: (context: Rule.Context) => string
  /** The answer past the limit; default `451 4.7.1 Rate limit exceeded; try again later`. */
  readonly verdict?: Rule.Verdict
  /** Keys that are never limited (internal networks, say). */
  readonly except?: ReadonlyArray<string>
  /** How many keys are counted at once; past it the oldest window is forgotten. Default 100,000. */
  readonly maxKeys?: number
}

/**
 * Counts each evaluation of the stage it is placed in, per client address (or `key`), in fixed
 * windows of `per`: at connect that limits connections, at mail or data messages, at rcpt
 * recipients (Postfix's anvil limits, Stalwart's throttles). Time is the context's `at`, so a
 * replay of recorded sessions counts as the live server did. Counts are per worker process.
 */
export const rateLimit = (options: RateLimitOptions): Rule.Rule => {
  const window = Duration.toMillis(options.per)
  if (window === undefined || window <= 0) throw new RangeError(`rateLimit: per must be a positive duration, got ${JSON.stringify(options.per)}`)
  if (!Number.isInteger(options.limit) || options.limit < 1) throw new RangeError(`rateLimit: limit must be a positive integer, got ${options.limit}`)
  const key = options.key ?? ((context: Rule.Context) => context.client.address)
  const except = networks(...(options.except ?? []))
  const refusal = options.verdict ?? Rule.tempfail(451, "4.7.1", "Rate limit exceeded; try again later")
  const windows = new Map<string, { start: number; count: number }>()
  const maxKeys = options.maxKeys ?? 100_000
  let nextSweep = 0
  return Rule.rule(options.name ?? "rate limit", (context) => {
    if (except.match(context.client.address) !== undefined) return Rule.next
    const at = context.at
    // Forget finished windows now and then, so that one-time clients do not pile up.
    if (at >= nextSweep) {
      for (const [k, w] of windows) if (at - w.start >= window) windows.delete(k)
      nextSweep = at + window
    }
    const k = key(context)
    const current = windows.get(k)
    if (current === undefined || at - current.start >= window || at < current.start) {
      // Bounded whatever the keys: a client rotating senders or addresses cannot grow it.
      if (current === undefined && windows.size >= maxKeys) {
        const oldest = windows.keys().next()
        if (oldest.done !== true) windows.delete(oldest.value)
      }
      windows.delete(k)
      windows.set(k, { start: at, count: 1 })
      return Rule.next
    }
    current.count += 1
    if (current.count <= options.limit) return Rule.next
    return refusal._tag === "Next" ? refusal : { ...refusal, because: { key: k, count: String(current.count), limit: String(options.limit) } }
  })
}
