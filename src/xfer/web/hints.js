// The line under the chips (who is here): what the room waits for, or how it ended, and
// what to do now. Words only, apart from the DOM and the connection (app.js renders them).

const START_AGAIN = "start xfer on the computer again and scan its new QR code";

/** How a terminal that leaves after what it came for is named: a transfer that ended well, or
 * ``texts`` texts and nothing else (``xfer send --text``). */
export function leftWell(who, texts = 0) {
  if (!texts) return `${who} finished and left.`;
  return `${who} sent ${texts === 1 ? "a text" : `${texts} texts`} and left.`;
}

/**
 * The hint, from the room as the page sees it: ``state`` (the connection's), ``others`` (the
 * terminals here), ``finished`` (leftWell's words, once that terminal left), ``wentElsewhere``
 * (a sender that left having sent its files to another device), ``left`` (who left last, leaving
 * nobody), ``busy`` (a sender here that sends to another device).
 */
export function peersHint({ state, others, finished, wentElsewhere, left, busy }) {
  if (others === 0 && finished) return `${finished} To send more, ${START_AGAIN}.`;
  if (others === 0 && wentElsewhere) {
    return `${wentElsewhere} sent its files to another device in this room and left. To get them here, ask for them to be sent again.`;
  }
  switch (state) {
    case "closed":
      return `Nobody is here any more. To go on, ${START_AGAIN}.`;
    case "failed": // stopped for good (tampering, a broken peer, a full room): it does not come back by itself
      return "This page left the room and does not rejoin by itself. To start over, scan the QR code again.";
    case "replaced":
      return "This room is open in another tab of this browser: go on there, or tap Retry now to bring it here.";
    case "connected":
      break;
    default:
      return "Offline: who is here shows again once the page is back in the room.";
  }
  if (others === 0 && left) return `${left} left. Whoever joins this room next shows up here.`;
  if (others === 0) return "Nobody else is here yet. The computer that showed this QR code will show up here.";
  return busy ? `${busy} is sending its files to another device in this room. It sends to one at a time.` : "";
}
