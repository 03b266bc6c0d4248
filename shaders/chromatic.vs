// The split direction of chromatic.fs, worked out once per vertex instead of once per pixel.
varying vec2 splitDir;     // cos, sin of the angle

void main() {
    isf_vertShaderInit();
    splitDir = vec2(cos(radians(angle)), sin(radians(angle)));
}
