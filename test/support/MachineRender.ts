/**
 * How machine tests write what the machine did: each reply as it goes on the wire (without its
 * final CRLF), other actions in brackets, so that a conversation reads like a transcript.
 */
import type * as Machine from "../../src/session/Machine.ts"
import * as Reply from "../../src/session/Reply.ts"

export const render = (action: Machine.Action): string => {
  switch (action._tag) {
    case "Reply":
      return Reply.format(action.reply).slice(0, -2)
    case "ReadData":
      return "[read data]"
    case "ReadBdat":
      return `[read bdat ${action.size}${action.first ? " first" : ""} ${action.keep ? "keep" : "discard"}]`
    case "Commit":
      return `[commit <${action.envelope.from}> -> ${action.envelope.to.map((t) => `<${t}>`).join(",")}]`
    case "Abort":
      return "[abort]"
    case "StartTls":
      return "[start tls]"
    case "Close":
      return `[close ${action.reason}]`
    case "Decide":
      return `[decide ${action.decision.stage}]`
    case "DecodeAuth":
      return `[decode auth ${action.step} ${action.response}]`
    case "VerifyAuth":
      return `[verify auth ${action.mechanism} after ${action.failures} failures]`
  }
}
