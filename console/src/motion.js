// Whether the user asked for less motion (prefers-reduced-motion): charts then draw without
// animations or ripples, as the console's styles drop their transitions (style.css).
export const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)').matches
