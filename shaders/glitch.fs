/*{
    "DESCRIPTION": "Block glitch: random horizontal bands slip sideways with split colour channels. The burst event glitches the whole frame for one frame.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Glitch"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.25, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "bandSize", "LABEL": "Band height (pixels)", "TYPE": "float", "DEFAULT": 24.0, "MIN": 2.0, "MAX": 160.0},
        {"NAME": "rate", "LABEL": "Changes per second", "TYPE": "float", "DEFAULT": 12.0, "MIN": 0.5, "MAX": 60.0},
        {"NAME": "burst", "LABEL": "Burst", "TYPE": "event"}
    ]
}*/

float hash11(float p) {
    p = fract(p * 0.1031);
    p *= p + 33.33;
    p *= p + p;
    return fract(p);
}

void main() {
    vec2 uv = isf_FragNormCoord;
    float a = burst ? 1.0 : amount;
    float tick = floor(TIME * rate);
    float band = floor(gl_FragCoord.y / bandSize);
    float r1 = hash11(band * 13.7 + tick * 71.3);
    float r2 = hash11(band * 5.3 + tick * 19.1 + 0.5);
    float on = r1 < a * 0.6 ? 1.0 : 0.0;
    float shift = (r2 - 0.5) * 0.25 * a * on;
    float split = 0.02 * a * on * (r1 * 2.0 - 0.5);
    vec2 base = vec2(fract(uv.x + shift), uv.y);
    vec4 c = IMG_NORM_PIXEL(inputImage, base);
    float red = IMG_NORM_PIXEL(inputImage, vec2(fract(base.x + split), uv.y)).r;
    float blue = IMG_NORM_PIXEL(inputImage, vec2(fract(base.x - split), uv.y)).b;
    gl_FragColor = vec4(red, c.g, blue, c.a);
}
