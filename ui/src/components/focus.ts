// Keyboard focus across an approval. Approving removes the card's Approve
// button at once ("Requested — waiting for the device") and the card soon
// after, which would drop the focus to the top of the page; instead it moves
// to the next card's Approve button, else the previous card's, else the
// inbox heading (id "inbox-heading").
import { tick } from "svelte";

const CARD = '[data-testid="pending-card"]';
const APPROVE = '[data-testid="approve"]:not(:disabled)';

/** The heading lost the focus when the last card left: the empty inbox's heading takes it. */
let headingWanted = false;

/**
 * Runs `approve` for the card whose button was clicked; when that button had
 * the focus (keyboard, or a click that focused it), the focus moves on once
 * the page has updated.
 */
export async function approveKeepingFocus<T>(e: Event, approve: () => Promise<T>): Promise<T> {
  const button = e.currentTarget instanceof HTMLElement ? e.currentTarget : null;
  const hadFocus = button != null && document.activeElement === button;
  const card = button?.closest(CARD) ?? null;
  const done = approve();
  if (hadFocus) {
    await tick();
    // Still there (the approval was refused at once): leave the focus be.
    if (!button.isConnected || button.matches(":disabled")) focusNear(card);
  }
  return done;
}

/** Focuses the first Approve button after `card`, else the last before it, else the heading. */
export function focusNear(card: Element | null): void {
  const cards = [...document.querySelectorAll<HTMLElement>(CARD)];
  const at = card ? cards.indexOf(card as HTMLElement) : -1;
  const order = at < 0 ? cards : [...cards.slice(at + 1), ...cards.slice(0, at).reverse()];
  const next = order.map((c) => c.querySelector<HTMLElement>(APPROVE)).find((b) => b != null);
  if (next) {
    headingWanted = false;
    next.focus();
  } else {
    headingWanted = true;
    document.getElementById("inbox-heading")?.focus();
  }
}

/**
 * An action for the empty inbox's heading: it takes the focus when it
 * replaces a heading that had it (the last card was approved by keyboard)
 * and the focus has fallen to the page.
 */
export function takesFocusAfterApproval(node: HTMLElement): void {
  if (!headingWanted) return;
  headingWanted = false;
  if (document.activeElement == null || document.activeElement === document.body) node.focus();
}
