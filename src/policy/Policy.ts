/**
 * The Policy service: what the session asks at each SMTP stage. Built from the configuration's
 * rule set (`Policy.layer`); tests provide their own.
 *
 * Each stage has its rules, in order, and a default for when they all say `next`. One default
 * is not configurable: a recipient outside the local domains is refused (`554 5.7.1 Relay
 * access denied`) unless a rule accepted it with `acceptRelay`, so no rule set makes an open
 * relay by leaving something out, nor by a plain `accept` meant for something else.
 */
import { Context, Duration, Effect, Layer } from "effect"
import * as Event from "../log/Event.ts"
import * as Rule from "./Rule.ts"

export type StageDefault = "accept" | "deny" | "tempfail"

/** The rules of every stage, as the configuration gives them. */
export interface RuleSet {
  readonly rules: { readonly [S in Rule.Stage]?: ReadonlyArray<Rule.Rule> }
  readonly defaults: { readonly [S in Rule.Stage]: StageDefault }
  /** How long a rule that returns an Effect may take before it counts as failed. */
  readonly ruleTimeout: Duration.Duration
  /** How much of a message's body rules see (`MessageView.body`), in bytes; 0 for none. */
  readonly bodyLimit?: number | undefined
}

/** Postfix's body_checks_size_limit: the body rules see by default. */
export const defaultBodyLimit = 51_200

/** The stages in session order, as the event schema lists them. */
export const stages: ReadonlyArray<Rule.Stage> = Event.PolicyStage.literals

/** No rules: every stage accepts, and only local recipients are accepted. */
export const defaultRuleSet: RuleSet = {
  rules: {},
  defaults: {
    connect: "accept",
    helo: "accept",
    auth: "accept",
    mail: "accept",
    rcpt: "accept",
    data: "accept",
    postq: "accept",
    delivery: "accept"
  },
  ruleTimeout: Duration.seconds(5)
}

export interface PolicyShape {
  /** The stage's decision: at once when its rules are synchronous, else as an Effect. */
  readonly decide: (context: Rule.Context) => Rule.Decision | Effect.Effect<Rule.Decision>
  /** The shadow rule set's decision, recorded and never enforced; undefined without one. */
  readonly shadow: (context: Rule.Context) => Rule.Decision | Effect.Effect<Rule.Decision> | undefined
  /**
   * Whether asking about `stage` can matter: it has rules (live or shadow), or a default other
   * than accept; with a shadow rule set, every session stage too, so that each live decision
   * has its shadow to compare with. A recipient outside the local domains (`recipientIsLocal`
   * false at rcpt, and so when it is not given: the safe side) is always asked about: relaying
   * is refused unless a rule lets it through. Where asking cannot matter, the session accepts
   * without building the rules' context, and the queue skips the stage (and its event).
   */
  readonly asks: (stage: Rule.Stage, recipientIsLocal?: boolean) => boolean
  /** How much of the body to keep for rules at data, postq and delivery; 0 when none of them can look. */
  readonly bodyLimit: number
}

export class Policy extends Context.Service<Policy, PolicyShape>()("postern/policy/Policy") {
  /** The policy of a rule set. */
  static readonly layer = (ruleSet: RuleSet): Layer.Layer<Policy> => Layer.succeed(Policy, Policy.of(make(ruleSet)))
}

/**
 * The reply to a recipient outside the local domains that nothing let relay (Postfix's text).
 * Built as a literal: the code is known good, and this runs for every refused recipient.
 */
export const relayDenied = (
  recipient: string,
  because: Readonly<Record<string, string>> = { recipient: "not in a local domain" }
): Extract<Rule.Verdict, { readonly answer: Rule.Answer }> => ({
  _tag: "Deny",
  answer: { code: 554, enhanced: "5.7.1", text: `<${recipient}>: Relay access denied` },
  because
})

/** A stage's decision when nothing could refuse it: the default accept, shared. */
export const acceptedByDefault: Rule.Decision = { verdict: { _tag: "Accept" }, rule: undefined }

const defaultDecision = (stage: Rule.Stage, setting: StageDefault): Rule.Decision => {
  switch (setting) {
    case "accept":
      return acceptedByDefault
    case "deny":
      return {
        verdict: { _tag: "Deny", answer: { code: 554, enhanced: "5.7.1", text: `Error: ${stage} refused by policy` } },
        rule: undefined
      }
    case "tempfail":
      return {
        verdict: { _tag: "Tempfail", answer: { code: 451, enhanced: "4.7.1", text: `Error: ${stage} deferred by policy` } },
        rule: undefined
      }
  }
}

/** The policy of `ruleSet`, with `shadow` evaluated beside it when given. */
export const make = (ruleSet: RuleSet, shadow?: RuleSet): PolicyShape => {
  const sets = shadow === undefined ? [ruleSet] : [ruleSet, shadow]
  const asked = new Set(
    stages.filter((stage) =>
      (shadow !== undefined && !Rule.queueStages.has(stage)) ||
      sets.some((set) => (set.rules[stage] ?? []).length > 0 || set.defaults[stage] !== "accept")
    )
  )
  const bodyLimit = [...Rule.messageStages].some((stage) => sets.some((set) => (set.rules[stage] ?? []).length > 0))
    ? ruleSet.bodyLimit ?? defaultBodyLimit
    : 0
  return {
    decide: decider(ruleSet),
    shadow: shadow === undefined ? () => undefined : decider(shadow),
    asks: (stage, recipientIsLocal = false) => asked.has(stage) || (stage === "rcpt" && !recipientIsLocal),
    bodyLimit
  }
}

const decider = (ruleSet: RuleSet): PolicyShape["decide"] => {
  const rules = new Map(stages.map((stage) => [stage, ruleSet.rules[stage] ?? []]))
  const defaults = new Map(stages.map((stage) => [stage, defaultDecision(stage, ruleSet.defaults[stage])]))
  const fallback = (context: Rule.Context): Rule.Decision =>
    context.stage === "rcpt" && !context.recipientIsLocal
      ? { verdict: relayDenied(context.recipient ?? ""), rule: undefined }
      : defaults.get(context.stage) ?? acceptedByDefault
  return (context) => {
    const decision = Rule.evaluate(rules.get(context.stage) ?? [], context, fallback, ruleSet.ruleTimeout)
    if (context.stage !== "rcpt" || context.recipientIsLocal) return decision
    return Effect.isEffect(decision) ? Effect.map(decision, (d) => relayGuard(d, context)) : relayGuard(decision, context)
  }
}

/**
 * A recipient outside the local domains is accepted only by an accept that relays
 * (`Rule.acceptRelay`, as `relay()` gives); any other accept of it is the relay refusal.
 */
const relayGuard = (decision: Rule.Decision, context: Rule.Context): Rule.Decision => {
  if (decision.verdict._tag !== "Accept" || decision.verdict.relay === true) return decision
  const because = decision.rule === undefined
    ? undefined
    : { recipient: "not in a local domain", accepted: `by rule '${decision.rule}', which does not relay (use acceptRelay)` }
  return { verdict: relayDenied(context.recipient ?? "", because), rule: decision.rule }
}
