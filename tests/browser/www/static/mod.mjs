// An ES module: browsers load it only with a JavaScript Content-Type.
export const answer = 42;
