// File choices through the native dialogs (issue 17): typed paths and a
// Downloads folder mean nothing on a phone. The dialog is a native boundary:
// tests mock this module's import of "@tauri-apps/plugin-dialog".
import { open, save, type DialogFilter } from "@tauri-apps/plugin-dialog";

/** CA and client certificates (PEM, whatever the extension). */
export const CERTIFICATE_FILES: DialogFilter[] = [
  { name: "Certificates (PEM)", extensions: ["pem", "crt", "cer"] },
  { name: "All files", extensions: ["*"] },
];
/** Client keys (PEM). */
export const KEY_FILES: DialogFilter[] = [
  { name: "Keys (PEM)", extensions: ["key", "pem"] },
  { name: "All files", extensions: ["*"] },
];
/** Firmware images exported from the Arduino IDE. */
export const FIRMWARE_FILES: DialogFilter[] = [{ name: "Firmware images (.bin)", extensions: ["bin"] }];

/**
 * Asks for one file in the native open dialog: its path (on Android a
 * `content://` URI; on iOS the path of a copy in the app's sandbox), or
 * `null` when the user cancelled.
 */
export async function chooseFile(title: string, filters: DialogFilter[]): Promise<string | null> {
  const chosen = await open({ title, filters, multiple: false, directory: false });
  return typeof chosen === "string" && chosen !== "" ? chosen : null;
}

/**
 * Asks where to save in the native save dialog: the path, `null` when the
 * user cancelled, or `undefined` when there is no dialog to ask with (the
 * plugin is not there, or refused): the caller then does what it did before.
 */
export async function chooseSaveTarget(
  title: string,
  defaultName: string,
  filters: DialogFilter[],
): Promise<string | null | undefined> {
  let chosen: string | null;
  try {
    chosen = await save({ title, defaultPath: defaultName, filters });
  } catch {
    return undefined;
  }
  return typeof chosen === "string" && chosen !== "" ? chosen : null;
}

/** The name a user knows a chosen file by: the last part of its path or URI. */
export function fileName(chosen: string): string {
  let last = chosen.trim().replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? "";
  try {
    last = decodeURIComponent(last);
  } catch {
    // Not percent-encoded after all: shown as it is.
  }
  // An Android document id ("primary:Download/ca.pem") names the file last.
  return last.split(/[:/]/).pop() || last;
}

/** `greenlight-history-YYYY-MM-DD.csv`, in the user's local date. */
export function historyFileName(now: Date = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `greenlight-history-${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}.csv`;
}
