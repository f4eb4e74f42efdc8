"""`device_of` answers from one cache entry per device (`names.first_channel`): its answer must be
the one the channel-name pattern gives for the full name, for every shape Asterisk writes.

Shapes: `<tech>/<peer>-<counter>` — chan_pjsip and chan_sip write an 8-digit hex counter
(`PJSIP/101-0000001f`, `SIP/voipms-00000a3c`), chan_iax2 a decimal one (`IAX2/trunk-12345`),
chan_dahdi `DAHDI/<n>-<m>` and `DAHDI/i<span>/<number>-<hex>`; peers may hold dashes
(`PJSIP/front-desk-0000002a`, FreePBX named endpoints), `<ZOMBIE>` / `<MASQ>` tails after a
masquerade (Asterisk 13), and names without a counter (dial targets, `PJSIP/reception-2`).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cdrsync.pbx.names import _device_of, device_of, first_channel

TECHS = st.sampled_from(["PJSIP", "SIP", "IAX2", "DAHDI", "Local", "Message", "pjsip"])
PART = st.text("0123456789abcdefABCDEFghz_.@", min_size=0, max_size=6)
PEER = st.lists(PART, min_size=1, max_size=3).map("-".join)
COUNTER = st.one_of(st.just(""), st.text("0123456789abcdef", min_size=1, max_size=9)
                    .map(lambda c: "-" + c))
TAIL = st.sampled_from(["", "<ZOMBIE>", "<MASQ>", ";1", ";2"])


@given(TECHS, PEER, COUNTER, TAIL)
def test_the_cached_device_is_the_one_the_name_gives(tech, peer, counter, tail):
    name = f"{tech}/{peer}{counter}{tail}"
    assert device_of(name) == _device_of.__wrapped__(name), (name, first_channel(name))


def test_channels_of_one_device_share_one_name_and_others_do_not():
    assert first_channel("PJSIP/101-0000001f") == first_channel("PJSIP/101-0000002a")
    assert first_channel("SIP/front-desk-00000003") == "SIP/front-desk-0"
    assert first_channel("PJSIP/101-0000001f") != first_channel("PJSIP/102-0000001f")
    assert first_channel("PJSIP/-1f") == "PJSIP/-1f"  # an empty peer keeps its name
    assert first_channel("Local/101@from-internal-00000001;1") == \
        "Local/101@from-internal-00000001;1"
