/** Magic endpoint values of the original (reference §1.3); never the address of a real process. */
export const ANY = 0x7ace;
export const NONE = 0x6ace;
export const SELF = 0x8ace;
