/*{
    "DESCRIPTION": "Beat flash and strobe: flash (0..1) screens a colour over the picture; the strobe event flashes fully for one frame; invert blends towards the negative; beatFlash adds a flash that fades through every beat the tracker is sure of. Route onsets to flash.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.1",
    "CATEGORIES": ["Color", "Audio Reactive"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "flash", "LABEL": "Flash", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "flashColor", "LABEL": "Flash colour", "TYPE": "color", "DEFAULT": [1.0, 1.0, 1.0, 1.0]},
        {"NAME": "invert", "LABEL": "Invert", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "strobe", "LABEL": "Strobe", "TYPE": "event"},
        {"NAME": "beatFlash", "LABEL": "Flash on the beat", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "beatDecay", "LABEL": "Beat flash decay (per beat)", "TYPE": "float", "DEFAULT": 6.0, "MIN": 1.0, "MAX": 20.0},
        {"NAME": "beatPhase", "LABEL": "Beat phase", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "VJ_FEATURE": "beat_phase"},
        {"NAME": "beatConfidence", "LABEL": "Beat confidence", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "VJ_FEATURE": "beat_confidence"}
    ]
}*/

// beatPhase and beatConfidence are fed by vj's beat tracker (VJ_FEATURE); other ISF hosts show them as
// sliders. The beat flash is exp(-beatDecay * phase): full on the beat, fading until the next one, and it
// fades in with the tracker's confidence (0 while no tempo is known), so it never flashes off the beat.

void main() {
    vec4 src = IMG_THIS_PIXEL(inputImage);
    vec3 c = mix(src.rgb, 1.0 - src.rgb, invert);
    float onBeat = beatFlash * exp(-beatDecay * beatPhase) * smoothstep(0.2, 0.5, beatConfidence);
    float f = strobe ? 1.0 : max(flash, onBeat);
    vec3 k = flashColor.rgb * flashColor.a * f;
    c = 1.0 - (1.0 - c) * (1.0 - k);               // screen: brightens towards the flash colour
    gl_FragColor = vec4(c, src.a);
}
