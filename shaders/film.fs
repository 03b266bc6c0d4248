/*{
    "DESCRIPTION": "Film look: vignette, animated grain and optional scanlines.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Stylize", "Film"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "vignette", "LABEL": "Vignette", "TYPE": "float", "DEFAULT": 0.45, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "softness", "LABEL": "Vignette softness", "TYPE": "float", "DEFAULT": 0.55, "MIN": 0.05, "MAX": 1.0},
        {"NAME": "grain", "LABEL": "Grain", "TYPE": "float", "DEFAULT": 0.07, "MIN": 0.0, "MAX": 0.5, "IDENTITY": 0.0},
        {"NAME": "scanlines", "LABEL": "Scanlines", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0}
    ]
}*/

// Dave Hoskins' hash without sine: stable across GPUs.
float hash12(vec2 p) {
    vec3 p3 = fract(vec3(p.xyx) * 0.1031);
    p3 += dot(p3, p3.yzx + 33.33);
    return fract((p3.x + p3.y) * p3.z);
}

void main() {
    vec4 src = IMG_THIS_PIXEL(inputImage);
    vec3 c = src.rgb;
    vec2 p = (isf_FragNormCoord - 0.5) * vec2(RENDERSIZE.x / RENDERSIZE.y, 1.0);
    float r = length(p) / 0.85;
    float v = smoothstep(1.0 - softness, 1.0 + 0.5 * softness, r * (0.6 + 0.6 * vignette));
    c *= 1.0 - vignette * v;
    float n = hash12(gl_FragCoord.xy + vec2(float(FRAMEINDEX % 1024) * 17.0, float(FRAMEINDEX % 512) * 7.0)) - 0.5;
    c += n * grain * (1.0 - 0.5 * c);             // grain shows most in the shadows and mids
    float line = 0.5 + 0.5 * sin(gl_FragCoord.y * 3.14159265);
    c *= 1.0 - scanlines * 0.5 * line;
    gl_FragColor = vec4(clamp(c, 0.0, 1.0), src.a);
}
