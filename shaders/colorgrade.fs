/*{
    "DESCRIPTION": "Colour grade: hue shift, saturation, contrast, gamma, then a cosine palette mapped over brightness (palette mix 0 = off). Palette shift moves the colours along the palette.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Color"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "hueShift", "LABEL": "Hue shift (degrees)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -180.0, "MAX": 180.0, "IDENTITY": 0.0},
        {"NAME": "saturation", "LABEL": "Saturation", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 2.5, "IDENTITY": 1.0},
        {"NAME": "contrast", "LABEL": "Contrast", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 2.5, "IDENTITY": 1.0},
        {"NAME": "gamma", "LABEL": "Gamma", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.25, "MAX": 3.0, "IDENTITY": 1.0},
        {"NAME": "paletteMix", "LABEL": "Palette mix", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "paletteShift", "LABEL": "Palette shift", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "palette", "LABEL": "Palette", "TYPE": "long", "DEFAULT": 0, "VALUES": [0, 1, 2, 3], "LABELS": ["Rainbow", "Fire", "Ocean", "Acid"]}
    ]
}*/

varying vec2 hueCS;       // from colorgrade.vs
varying float invGamma;

// Inigo Quilez's cosine palette: a + b * cos(2 pi (c t + d)).
vec3 cosinePalette(float t, int which) {
    vec3 a = vec3(0.5), b = vec3(0.5), c = vec3(1.0), d = vec3(0.0, 0.33, 0.67);
    if (which == 1) { c = vec3(1.0, 1.0, 0.5); d = vec3(0.0, 0.1, 0.2); b = vec3(0.5, 0.4, 0.3); }
    else if (which == 2) { a = vec3(0.2, 0.4, 0.6); b = vec3(0.2, 0.3, 0.4); d = vec3(0.5, 0.6, 0.7); }
    else if (which == 3) { c = vec3(2.0, 1.0, 0.0); d = vec3(0.5, 0.2, 0.25); }
    return a + b * cos(6.28318530718 * (c * t + d));
}

void main() {
    vec4 src = IMG_THIS_PIXEL(inputImage);
    vec3 c = src.rgb;
    // Hue: rotate the chroma plane of YIQ.
    float y = dot(c, vec3(0.299, 0.587, 0.114));
    float i = dot(c, vec3(0.596, -0.274, -0.322));
    float q = dot(c, vec3(0.211, -0.523, 0.312));
    float i2 = i * hueCS.x - q * hueCS.y;
    float q2 = i * hueCS.y + q * hueCS.x;
    c = vec3(y + 0.956 * i2 + 0.621 * q2, y - 0.272 * i2 - 0.647 * q2, y - 1.106 * i2 + 1.703 * q2);
    float luma = dot(c, vec3(0.299, 0.587, 0.114));
    c = mix(vec3(luma), c, saturation);
    c = (c - 0.5) * contrast + 0.5;
    c = pow(clamp(c, 0.0, 1.0), vec3(invGamma));
    float t = dot(c, vec3(0.299, 0.587, 0.114)) + paletteShift;
    c = mix(c, cosinePalette(t, palette), paletteMix);
    gl_FragColor = vec4(clamp(c, 0.0, 1.0), src.a);
}
