/**
 * Drives the machine the way the session does: every `Decide` it asks is answered at once by a
 * policy (the rules-free default unless a test gives its own), so that machine tests read as
 * conversations.
 */
import { Effect } from "effect"
import type * as Event from "../../src/log/Event.ts"
import * as Policy from "../../src/policy/Policy.ts"
import type * as Rule from "../../src/policy/Rule.ts"
import * as Machine from "../../src/session/Machine.ts"
import * as PolicyContext from "../../src/session/PolicyContext.ts"

export const defaultPolicy: Policy.PolicyShape = Policy.make(Policy.defaultRuleSet)

export const connection: PolicyContext.Connection = {
  session: "S1",
  peer: { address: "192.0.2.1", port: 40000 },
  local: { address: "192.0.2.25", port: 25 },
  role: "smtp",
  clientName: undefined
}

/**
 * `Machine.step`, then each Decide answered by `policy` and stepped in: the actions are those of
 * every sub-step (without the Decides), `onDecision` sees each decision.
 */
export const step = (
  state: Machine.State,
  input: Machine.Input,
  options: {
    readonly policy?: Policy.PolicyShape
    readonly onDecision?: (stage: Event.PolicyStage, decision: Rule.Decision) => void
  } = {}
): Machine.Step => {
  const policy = options.policy ?? defaultPolicy
  let next = Machine.step(state, input)
  const actions: Array<Machine.Action> = []
  let flush = next.flush
  for (;;) {
    let asked: Machine.Deciding | undefined
    for (const action of next.actions) {
      if (action._tag === "Decide") asked = action.decision
      else actions.push(action)
    }
    if (asked === undefined) return { state: next.state, actions, flush }
    const decision = policy.decide(PolicyContext.make(connection, next.state, asked, 0))
    if (Effect.isEffect(decision)) throw new Error("machine tests answer decisions synchronously")
    options.onDecision?.(asked.stage, decision)
    next = Machine.step(next.state, PolicyContext.decidedInput(asked.stage, decision))
    flush = flush || next.flush
  }
}
