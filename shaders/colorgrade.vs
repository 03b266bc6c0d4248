// Per-frame constants of colorgrade.fs, worked out once per vertex instead of once per pixel.
varying vec2 hueCS;       // cos, sin of the hue shift
varying float invGamma;

void main() {
    isf_vertShaderInit();
    float h = radians(hueShift);
    hueCS = vec2(cos(h), sin(h));
    invGamma = 1.0 / gamma;
}
