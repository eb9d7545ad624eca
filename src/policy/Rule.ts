/**
 * Policy rules: what an administrator writes in `postern.config.ts`, and how a stage's rules
 * are evaluated.
 *
 * A rule has a name and a function from the stage's read-only context to a verdict: `next`
 * (no opinion, go on), `accept` (skip the stage's remaining rules), `deny`, `tempfail` or
 * `disconnect`. The rules of a stage run in order and the first verdict other than `next`
 * decides; when every rule says `next`, the stage's default decides. A rule may return an
 * Effect (for DNS and other I/O); one that throws, fails or overruns its time budget gives
 * `451 4.3.0` and names itself in the decision, never a silent pass.
 *
 * Evaluation is synchronous for as long as the rules are: no Effect is built for a stage whose
 * rules return plain verdicts, so a ten-rule stage costs a few hundred nanoseconds. Pure: no
 * I/O.
 */
import { Duration, Effect } from "effect"
import type * as Event from "../log/Event.ts"

/** The SMTP stages at which the session asks the policy. */
export type Stage = Event.PolicyStage

/** A reply a verdict gives the client. */
export interface Answer {
  readonly code: number
  readonly enhanced: string
  readonly text: string
}

/** A header field a rule adds to the message (data and postq stages). */
export interface AddedHeader {
  readonly name: string
  readonly value: string
}

/**
 * What a rule says. `because` records what mattered, for the decision's event. At data and
 * postq, `next` and `accept` may carry header fields to add to the message (see `withHeaders`).
 */
export type Verdict =
  | { readonly _tag: "Next"; readonly headers?: ReadonlyArray<AddedHeader> | undefined }
  | {
    readonly _tag: "Accept"
    readonly because?: Readonly<Record<string, string>> | undefined
    readonly headers?: ReadonlyArray<AddedHeader> | undefined
    /**
     * At rcpt: this accept may relay, i.e. take a recipient outside the local domains
     * (`acceptRelay`). A plain `accept` of such a recipient still gets the relay refusal, as
     * Postfix keeps smtpd_relay_restrictions apart, so no rule opens a relay by accident.
     */
    readonly relay?: boolean | undefined
  }
  /** At data, postq and delivery: hold the message (or a recipient's copy) in the named quarantine instead of delivering it. */
  | { readonly _tag: "Quarantine"; readonly name: string; readonly because?: Readonly<Record<string, string>> | undefined }
  | {
    readonly _tag: "Deny" | "Tempfail" | "Disconnect"
    readonly answer: Answer
    readonly because?: Readonly<Record<string, string>> | undefined
  }

export const next: Extract<Verdict, { readonly _tag: "Next" }> = { _tag: "Next" }
export const accept: Extract<Verdict, { readonly _tag: "Accept" }> = { _tag: "Accept" }
/** Accepts at rcpt even a recipient outside the local domains: relaying, on purpose. */
export const acceptRelay: Extract<Verdict, { readonly _tag: "Accept" }> = { _tag: "Accept", relay: true }

type Refusal = "Deny" | "Tempfail" | "Disconnect"

/**
 * What is wrong with a refusal's reply, if anything: the one set of checks for `deny`,
 * `tempfail` and `disconnect` (which throw it) and for verdicts a rule wrote as plain objects
 * (which then count as no verdict). Builds nothing for a good reply: this runs for every refusal.
 */
const answerProblem = (tag: Refusal, code: number, enhanced: string, text: string): string | undefined => {
  const highest = tag === "Tempfail" ? 499 : 599
  if (!Number.isInteger(code) || code < 400 || code > highest) return `reply code ${code} is not in 400-${highest}`
  // 421 tells the client the connection is closing (RFC 5321 3.8): only disconnect may say it.
  if (code === 421 && tag !== "Disconnect") return "421 closes the connection; use disconnect"
  if (!isEnhancedCode(enhanced)) return `"${enhanced}" is not an enhanced status code`
  // RFC 3463 section 3: the class of the enhanced code is the class of the reply.
  if (enhanced.charCodeAt(0) - 48 !== Math.floor(code / 100)) {
    return `enhanced code ${enhanced} does not match reply code ${code} (RFC 3463: same class)`
  }
  if (text.indexOf("\r") >= 0 || text.indexOf("\n") >= 0) return "the text must be one line"
  return undefined
}

const refusal = (tag: Refusal, code: number, enhanced: string, text: string): Verdict => {
  const problem = answerProblem(tag, code, enhanced, text)
  if (problem !== undefined) throw new RangeError(`${tag.toLowerCase()}: ${problem}`)
  return { _tag: tag, answer: { code, enhanced, text } }
}

// Checked on every refusal a rule builds; the few codes in use are remembered.
const enhancedCodes = new Set<string>()

const isEnhancedCode = (enhanced: string): boolean => {
  if (enhancedCodes.has(enhanced)) return true
  if (!/^[245]\.\d{1,3}\.\d{1,3}$/.test(enhanced)) return false
  if (enhancedCodes.size < 1024) enhancedCodes.add(enhanced)
  return true
}

const quarantineName = /^[a-z0-9][a-z0-9._-]{0,63}$/

/**
 * Accepts the message (250) and holds it in the quarantine `name` (a mailbox per recipient under
 * `<stateDirectory>/quarantine/<name>/`) instead of delivering it. At data and postq the whole
 * message is held; at delivery, the copy of the recipient being delivered.
 */
export const quarantine = (name: string): Verdict => {
  if (!quarantineName.test(name)) throw new RangeError(`quarantine: "${name}" is not a quarantine name (a-z, 0-9, '.', '_', '-')`)
  return { _tag: "Quarantine", name }
}

/** Refuses what the stage is about (a 4xx or 5xx reply; the session goes on). */
export const deny = (code = 550, enhanced = "5.7.1", text = "Rejected by policy"): Verdict => refusal("Deny", code, enhanced, text)

/** Asks the client to try again later (a 4xx reply; the session goes on). */
export const tempfail = (code = 451, enhanced = "4.7.1", text = "Try again later"): Verdict =>
  refusal("Tempfail", code, enhanced, text)

/** Answers and closes the connection. */
export const disconnect = (code = 421, enhanced = "4.7.0", text = "Closing connection"): Verdict =>
  refusal("Disconnect", code, enhanced, text)

const fieldName = /^[!-9;-~]+$/

/** What is wrong with a header field a rule adds, if anything: a name of RFC 5322 ftext, a one-line value. */
const headerProblem = (name: string, value: string): string | undefined =>
  !fieldName.test(name) ? `"${name}" is not a header field name` : /[\r\n]/.test(value) ? `the value of ${name} must be one line` : undefined

/**
 * `next` or `accept` that also adds header fields to the message, above the trace fields this
 * server writes (a spam score, a tag). Only at the data and postq stages, and only if the
 * message is accepted; field names are RFC 5322 ftext, values one line.
 */
export const withHeaders = <V extends Extract<Verdict, { readonly _tag: "Next" | "Accept" }>>(
  verdict: V,
  headers: Readonly<Record<string, string>>
): V => {
  const added = Object.entries(headers).map(([name, value]) => {
    const problem = headerProblem(name, value)
    if (problem !== undefined) throw new RangeError(`withHeaders: ${problem}`)
    return { name, value }
  })
  return { ...verdict, headers: [...(verdict.headers ?? []), ...added] }
}

/** The same verdict with what mattered attached (shown in the decision's event and in replay). */
export const because = (verdict: Verdict, facts: Readonly<Record<string, string>>): Verdict =>
  verdict._tag === "Next" ? verdict : { ...verdict, because: facts }

/** What a rule sees: the session as it stands at the stage. Read-only. */
export interface Context {
  readonly stage: Stage
  readonly session: string
  /**
   * When the stage is decided, in epoch milliseconds: the session's clock live, the recorded
   * time in a replay. Rules that count over time (rate limits) use it, not the wall clock, so
   * that re-running a recorded day gives the answers that day would have had.
   */
  readonly at: number
  /** The client: its IP address (`address`, also as `ip`), port, and reverse DNS name when looked up. */
  readonly client: { readonly address: string; readonly ip: string; readonly port: number; readonly name: string | undefined }
  readonly listener: { readonly role: Event.Role; readonly address: string; readonly port: number }
  /** STARTTLS done, or an implicit TLS listener. */
  readonly isSecured: boolean
  readonly tls: Event.TlsFacts | undefined
  /** The EHLO/HELO name (from helo on). */
  readonly helo: string | undefined
  /** The authenticated user (AUTH), if any. */
  readonly authenticated: string | undefined
  /** The reverse path, "" for the null sender (from mail on). */
  readonly from: string | undefined
  /** Recipients accepted so far. */
  readonly recipients: ReadonlyArray<string>
  /** At rcpt and delivery: the recipient being decided, and whether its domain is one of the local domains. */
  readonly recipient: string | undefined
  readonly recipientIsLocal: boolean
  /** From data on: the content's size in bytes. */
  readonly size: number | undefined
  /** From data on: the message's header fields, unfolded, the first value of one by name, the body. */
  readonly message: MessageView | undefined
  /** At postq and delivery: the queue id of the message. */
  readonly queueId: string | undefined
  /** At delivery: how many attempts to deliver to `recipient` came before this one. */
  readonly attempts: number | undefined
  /** From mail on, when SPF checking is on: the sender's SPF result (RFC 7208), the MAIL FROM identity. */
  readonly spf: SpfView | undefined
  /**
   * From mail on, when SPF checking of the HELO identity is on (`spf.helo`): the HELO name's SPF
   * result (RFC 7208 2.3), checked at MAIL beside the sender's. Undefined for a HELO that is an
   * address literal or a bare name.
   */
  readonly spfHelo: SpfView | undefined
  /** At data, when DKIM verification is on: each signature's domain, selector and result. */
  readonly dkim: ReadonlyArray<{ readonly domain: string; readonly selector: string; readonly result: string }> | undefined
  /**
   * From data on, when DKIM verification is on: the message's ARC chain (RFC 8617): its
   * validation and newest instance (0 without a chain); for a passing chain, the domain that
   * sealed the newest set and the DMARC result and From domain that set recorded.
   */
  readonly arc: {
    readonly result: string
    readonly instance: number
    readonly sealer: string | undefined
    readonly recorded: { readonly dmarc: string | undefined; readonly from: string | undefined } | undefined
  } | undefined
  /** At data, when DKIM verification is on: DMARC's result for the From domain, and its policy. */
  readonly dmarc: { readonly result: string; readonly domain: string; readonly policy: string } | undefined
}

export interface SpfView {
  readonly result: "pass" | "fail" | "softfail" | "neutral" | "none" | "temperror" | "permerror"
  /** The domain checked (the sender's, or the HELO name's for the null sender). */
  readonly domain: string
  readonly comment: string | undefined
}

export interface MessageView {
  readonly headers: ReadonlyArray<{ readonly name: string; readonly value: string }>
  /** The first value of the header field `name` (case-insensitive), if the message has one. */
  readonly header: (name: string) => string | undefined
  /**
   * The start of the body (what follows the header section), up to `policy.bodyLimit` bytes as
   * Postfix's body_checks_size_limit. Undefined where the content is not at hand: in a replay
   * once the spool has let the message go, or with `policy.bodyLimit` 0.
   */
  readonly body: BodyView | undefined
  /**
   * At postq and delivery: reads the whole message as it will be delivered (the fields Postern
   * added, then the stored content), for a rule that must see all of it (a virus scan, a
   * signature). It holds the message in memory: at most `limits.messageSize`.
   */
  readonly content: (() => Effect.Effect<Uint8Array, unknown>) | undefined
}

export interface BodyView {
  /** The body's first bytes, as received (dot-unstuffed, CRLF line ends). */
  readonly bytes: Uint8Array
  /** Whether the body goes on past `bytes`. */
  readonly truncated: boolean
  /** `bytes` decoded as UTF-8 (invalid sequences as U+FFFD), for matching with a RegExp. */
  readonly text: () => string
}

/** What a rule returns: a verdict, or an Effect of one when it needs I/O. */
export type Result = Verdict | Effect.Effect<Verdict, unknown>

export interface Rule {
  readonly name: string
  readonly evaluate: (context: Context) => Result
  /** Checks the rule depends on (the built-ins say), so that the configuration can warn when they are off. */
  readonly requires?: ReadonlyArray<"spf.check" | "spf.helo" | "dkim.verify"> | undefined
  /** The stages where the rule can decide anything (the built-ins say); elsewhere it always goes on. */
  readonly decidesAt?: ReadonlyArray<Stage> | undefined
}

/** A named rule. */
export const rule = (name: string, evaluate: (context: Context) => Result): Rule => ({ name, evaluate })

/** The stages where the message is whole: rules there may hold it, and read its body. */
export const messageStages: ReadonlySet<Stage> = new Set(["data", "postq", "delivery"])
/** The stages whose verdicts may add header fields (`withHeaders`). */
const headerStages: ReadonlySet<Stage> = new Set(["data", "postq"])
/** The stages the queue asks about, after the session has given its 250. */
export const queueStages: ReadonlySet<Stage> = new Set(["postq", "delivery"])

/** The outcome of a stage: the deciding verdict and the rule that gave it (none: the default). */
export interface Decision {
  readonly verdict: Exclude<Verdict, { readonly _tag: "Next" }>
  readonly rule: string | undefined
  /** Header fields the rules that went on (next) or accepted asked to add, in rule order. */
  readonly headers?: ReadonlyArray<AddedHeader> | undefined
  /** Why a rule counted as a tempfail: what it threw, or that it overran its budget. */
  readonly error?: string | undefined
}

/** The answer to a rule that throws, fails or overruns: the session goes on, the client retries. */
export const ruleFailed: Answer = { code: 451, enhanced: "4.3.0", text: "Error: policy rule failed; try again later" }

const failure = (rule: Rule, error: string): Decision => ({
  verdict: { _tag: "Tempfail", answer: ruleFailed },
  rule: rule.name,
  error
})

/** Text for anything a rule may throw or return; never throws itself (not every value has a String). */
const describe = (value: unknown): string => {
  if (value instanceof Error) return value.message
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

/** The checks of `deny`, `tempfail` and `disconnect`, for a reply a rule wrote as a plain object. */
const isAnswer = (value: unknown, tag: Refusal): value is Answer => {
  if (typeof value !== "object" || value === null || !("code" in value) || !("enhanced" in value) || !("text" in value)) {
    return false
  }
  const { code, enhanced, text } = value
  return typeof code === "number" && typeof enhanced === "string" && typeof text === "string" &&
    answerProblem(tag, code, enhanced, text) === undefined
}

const areHeaders = (value: unknown): boolean =>
  value === undefined ||
  (Array.isArray(value) &&
    value.every((h: unknown) => {
      if (typeof h !== "object" || h === null) return false
      const name: unknown = Reflect.get(h, "name")
      const text: unknown = Reflect.get(h, "value")
      return typeof name === "string" && typeof text === "string" && headerProblem(name, text) === undefined
    }))

const isVerdict = (value: unknown): value is Verdict => {
  if (typeof value !== "object" || value === null || !("_tag" in value)) return false
  switch (value._tag) {
    case "Next":
    case "Accept":
      return !("headers" in value) || areHeaders(value.headers)
    case "Quarantine":
      return "name" in value && typeof value.name === "string" && quarantineName.test(value.name)
    case "Deny":
    case "Tempfail":
    case "Disconnect":
      return "answer" in value && isAnswer(value.answer, value._tag)
    default:
      return false
  }
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof value === "object" && value !== null && "then" in value && typeof value.then === "function"

/** A Promise a rule returned is not used; its rejection must not go unhandled in the process. */
const ignoreRejection = (promise: PromiseLike<unknown>): void => {
  Promise.resolve(promise).catch(() => undefined)
}

/** A rule's synchronous result if it is a verdict; a Promise's rejection is caught, never left unhandled. */
export const asVerdict = (result: unknown): Verdict | undefined => {
  if (!isThenable(result)) return isVerdict(result) ? result : undefined
  ignoreRejection(result)
  return undefined
}

/** Why a rule's result is not a verdict; a Promise's rejection is caught, never left unhandled. */
const notAVerdict = (result: unknown): string => {
  if (isThenable(result)) {
    ignoreRejection(result)
    return "returned a Promise, not a verdict: a rule that needs I/O returns an Effect (Effect.promise(() => ...))"
  }
  return `returned ${describe(result)}, not a verdict`
}

/**
 * Runs `rules` in order on `context`. Returns the decision itself while every rule answers
 * synchronously, and an Effect from the first rule that returns one (each such rule gets
 * `budget` before it counts as failed).
 */
export const evaluate = (
  rules: ReadonlyArray<Rule>,
  context: Context,
  fallback: (context: Context) => Decision,
  budget: Duration.Duration
): Decision | Effect.Effect<Decision> => {
  // Made only when a rule answers something other than the shared `next`.
  let added: Array<AddedHeader> | undefined
  for (let index = 0; index < rules.length; index++) {
    const rule = rules[index]
    if (rule === undefined) continue
    let result: Result
    try {
      result = rule.evaluate(context)
    } catch (error) {
      return failure(rule, `threw: ${describe(error)}`)
    }
    // `next` is one shared object, and the common answer; then any other verdict; Effects last.
    if (result === next) continue
    added ??= []
    if (isVerdict(result)) {
      const decided = decisionOf(result, rule, context, added)
      if (decided !== undefined) return decided
      continue
    }
    if (Effect.isEffect(result)) return finishAsync(rules, index, result, context, fallback, budget, added)
    return failure(rule, notAVerdict(result))
  }
  return withAdded(fallback(context), added)
}

/**
 * What one rule's verdict does to its stage: the decision, or undefined to go on with the next
 * rule. The header fields of verdicts that go on or accept are collected in `added`.
 */
const decisionOf = (verdict: Verdict, rule: Rule, context: Context, added: Array<AddedHeader>): Decision | undefined => {
  if (verdict._tag === "Quarantine" && !messageStages.has(context.stage)) {
    return failure(rule, "quarantine is only for the data, postq and delivery stages")
  }
  if (verdict._tag === "Disconnect" && queueStages.has(context.stage)) {
    return failure(rule, `disconnect is only for the session's stages: at ${context.stage} there is no connection`)
  }
  if (verdict._tag !== "Next" && verdict._tag !== "Accept") return { verdict, rule: rule.name }
  if (verdict.headers !== undefined && verdict.headers.length > 0) {
    // Elsewhere there is no message to add them to, or it is already on its way.
    if (!headerStages.has(context.stage)) return failure(rule, "header fields can only be added at the data and postq stages")
    added.push(...verdict.headers)
  }
  return verdict._tag === "Accept" ? withAdded({ verdict, rule: rule.name }, added) : undefined
}

/** An accepting decision with the headers the rules asked for; a refusal adds nothing. */
const withAdded = (decision: Decision, added: ReadonlyArray<AddedHeader> | undefined): Decision =>
  added === undefined || added.length === 0 || decision.verdict._tag !== "Accept" ? decision : { ...decision, headers: added }

const settle = (rule: Rule, result: Effect.Effect<Verdict, unknown>, budget: Duration.Duration) =>
  result.pipe(
    Effect.timeoutOption(budget),
    Effect.map((verdict) =>
      verdict._tag === "None"
        ? ({ _tag: "Failed", error: `took longer than ${Duration.format(budget)}` } as const)
        : isVerdict(verdict.value)
        ? ({ _tag: "Verdict", verdict: verdict.value } as const)
        : ({ _tag: "Failed", error: notAVerdict(verdict.value) } as const)
    ),
    Effect.catchCause((cause) => Effect.succeed({ _tag: "Failed", error: `failed: ${String(cause)}` } as const))
  )

const finishAsync = Effect.fnUntraced(function*(
  rules: ReadonlyArray<Rule>,
  from: number,
  first: Effect.Effect<Verdict, unknown>,
  context: Context,
  fallback: (context: Context) => Decision,
  budget: Duration.Duration,
  added: Array<AddedHeader>
) {
  let pending: Effect.Effect<Verdict, unknown> | undefined = first
  for (let index = from; index < rules.length; index++) {
    const rule = rules[index]
    if (rule === undefined) continue
    let result: Result
    if (pending !== undefined) {
      result = pending
      pending = undefined
    } else {
      try {
        result = rule.evaluate(context)
      } catch (error) {
        return failure(rule, `threw: ${describe(error)}`)
      }
    }
    let verdict: Verdict
    if (Effect.isEffect(result)) {
      const settled = yield* settle(rule, result, budget)
      if (settled._tag === "Failed") return failure(rule, settled.error)
      verdict = settled.verdict
    } else if (isVerdict(result)) {
      verdict = result
    } else {
      return failure(rule, notAVerdict(result))
    }
    const decided = decisionOf(verdict, rule, context, added)
    if (decided !== undefined) return decided
  }
  return withAdded(fallback(context), added)
})
