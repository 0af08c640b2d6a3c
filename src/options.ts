/** Helpers shared by the `resolve…Options()` functions. */

/** Drops keys whose value is undefined, so a spread of defaults is not overwritten by them. */
export function stripUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}
