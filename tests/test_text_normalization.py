"""English text normalisation (models/normalize_en.py via models/text.py normalize): real
sentences read as a person would, word for word, and abbreviation periods that do not end a
sentence."""

from __future__ import annotations

import pytest

from voxc.models import normalize_en as N
from voxc.models import text as T

# (written, spoken): the spoken side is normalize()'s tokens joined by spaces; ^x is a spelled letter.
SENTENCES = [
    ('The company raised $3.5 million in its latest round.',
     'the company raised three point five million dollars in its latest round .'),
    ('Lunch cost $12.50 per person.',
     'lunch cost twelve dollars and fifty cents per person .'),
    ('Tickets are £5 for adults and €20 at the door.',
     'tickets are five pounds for adults and twenty euros at the door .'),
    ('The yen fell to ¥150 against the dollar.',
     'the yen fell to one hundred fifty yen against the dollar .'),
    ('Revenue hit 2.5bn last year, up from 10k users.',
     'revenue hit two point five billion last year , up from ten thousand users .'),
    ('She finished 21st in the race, and he came 3rd.',
     'she finished twenty first in the race , and he came third .'),
    ('In 1999 the band released its first album.',
     'in nineteen ninety nine the band released its first album .'),
    ("The 1990s were louder than the '90s suggest.",
     'the nineteen nineties were louder than the nineties suggest .'),
    ('The meeting is on Jan. 5, 2024 at 10:30 am.',
     'the meeting is on january fifth , twenty twenty four at ten thirty ^a ^m .'),
    ('The deadline was 5 January 2024.',
     'the deadline was the fifth of january twenty twenty four .'),
    ('The file is dated 2024-01-05.',
     'the file is dated january fifth , twenty twenty four .'),
    ('Christmas fell on 12/25/2023 that year.',
     'christmas fell on december twenty fifth , twenty twenty three that year .'),
    ('The train leaves at 7 p.m. and arrives at 14:05.',
     'the train leaves at seven ^p ^m and arrives at fourteen oh five .'),
    ('Dr. Smith met Mr. and Mrs. Jones on Main St. yesterday.',
     'doctor smith met mister and missus jones on main street yesterday .'),
    ('Bring fruit, bread, etc. to the picnic.',
     'bring fruit , bread , et cetera to the picnic .'),
    ('Use a short name, e.g. the first one.',
     'use a short name , for example the first one .'),
    ('Arsenal vs. Chelsea kicks off soon.',
     'arsenal versus chelsea kicks off soon .'),
    ('He lives at No. 5 Baker Street.',
     'he lives at number five baker street .'),
    ('The hike is 12 km and the bag weighs 5 kg.',
     'the hike is twelve kilometers and the bag weighs five kilograms .'),
    ('It was -5°C this morning.',
     'it was minus five degrees celsius this morning .'),
    ('See https://voxc.dev/docs for details.',
     'see ^h ^t ^t ^p ^s colon slash slash voxc dot ^dev slash docs for details .'),
    ('Write to ana.li@example.com with questions.',
     'write to ^ana dot ^li at example dot ^com with questions .'),
    ('Call 555-123-4567 today.',
     'call five five five , one two three , four five six seven today .'),
    ('Add 1/2 cup of sugar.',
     'add one half cup of sugar .'),
    ('Prices rose 3.2% in March.',
     'prices rose three point two percent in march .'),
    ('Expect 5-10 minutes of delay.',
     'expect five to ten minutes of delay .'),
    ('Dr. Patel will see you at 9:15 tomorrow.',
     'doctor patel will see you at nine fifteen tomorrow .'),
    ('We flew from St. Louis to Washington on Dec. 3rd.',
     'we flew from saint louis to washington on december third .'),
    ('The U.S. economy grew 2.1% in the third quarter.',
     'the ^u ^s economy grew two point one percent in the third quarter .'),
    ('A coffee costs $0.99 and a bagel costs $1.',
     'a coffee costs ninety nine cents and a bagel costs one dollar .'),
    ('The stock closed at $1,234.56 on Friday.',
     'the stock closed at one thousand two hundred thirty four dollars and fifty six cents on friday .'),
    ('Apple is worth over $3 trillion, analysts said.',
     'apple is worth over three trillion dollars , analysts said .'),
    ('The startup raised €5m from investors.',
     'the startup raised five million euros from investors .'),
    ('Meet me at 10 a.m. Then we can talk.',
     'meet me at ten ^a ^m . then we can talk .'),
    ('The store opens at 8am and closes at 9 PM.',
     'the store opens at eight ^a ^m and closes at nine ^p ^m .'),
    ('Your appointment is at 12:00 on 3/4/2025.',
     "your appointment is at twelve o'clock on march fourth , twenty twenty five ."),
    ('Mt. Everest is 8,849 m tall.',
     'mount everest is eight thousand eight hundred forty nine meters tall .'),
    ('He was born on the 4th of July, 1976.',
     'he was born on the fourth of july nineteen seventy six .'),
    ('Temperatures will reach 98°F by Friday.',
     'temperatures will reach ninety eight degrees fahrenheit by friday .'),
    ('The package weighs 1 kg and costs £12.99.',
     'the package weighs one kilogram and costs twelve pounds and ninety nine pence .'),
    ('Call us at (555) 123-4567 or +1 555-123-4567.',
     'call us at five five five , one two three , four five six seven or plus one , five five five , one two three , four five six seven .'),
    ('Mix 2 3/4 cups of flour with 1/3 cup of milk.',
     'mix two and three quarters cups of flour with one third cup of milk .'),
    ('The COVID-19 pandemic began in 2020.',
     'the ^covid nineteen pandemic began in twenty twenty .'),
    ('Our TTS engine runs at 24 kHz on a 2.4 GHz CPU.',
     'our ^tts engine runs at twenty four kilohertz on a two point four gigahertz ^cpu .'),
    ('Install node.js and read the README file.',
     'install node dot ^j ^s and read the readme file .'),
    ('Email support@voxc.dev or visit www.voxc.dev today.',
     'email support at voxc dot ^dev or visit ^w ^w ^w dot voxc dot ^dev today .'),
    ('The 2000s and the 80s were very different.',
     'the two thousands and the eighties were very different .'),
    ('Gates open 6:30-7:00 p.m. on weekdays.',
     'gates open six thirty to seven ^p ^m on weekdays .'),
    ('The speed limit is 65 mph on this road.',
     'the speed limit is sixty five miles per hour on this road .'),
    ('Sales grew from 1,200 to 3,450 units in 2023.',
     'sales grew from one thousand two hundred to three thousand four hundred fifty units in twenty twenty three .'),
    ('She lives at 221B Baker St.',
     'she lives at two hundred twenty one b baker street .'),
    ('Prof. Chen teaches room No. 12 vs. room 14.',
     'professor chen teaches room number twelve versus room fourteen .'),
    ('The score was 3-2 after 90 minutes.',
     'the score was three to two after ninety minutes .'),
    ('Wait 24/7 for news about Ch. 5.',
     'wait twenty four seven for news about chapter five .'),
    ('The temperature dropped to -12.5 degrees.',
     'the temperature dropped to minus twelve point five degrees .'),
    ('In the 1800s, travel took weeks.',
     'in the eighteen hundreds , travel took weeks .'),
    ('Revenue was $4.2bn, up 15% year on year.',
     'revenue was four point two billion dollars , up fifteen percent year on year .'),
    ("I'll arrive between 2015 and 2019 or so.",
     "i'll arrive between twenty fifteen and twenty nineteen or so ."),
    ('Save 007 as agent No. 7.',
     'save zero zero seven as agent number seven .'),
    ('Take exit 23B toward I-95.',
     'take exit twenty three b toward i ninety five .'),
    ('The attacks on Sept. 11, 2001 changed air travel.',
     'the attacks on september eleventh , two thousand one changed air travel .'),
    ('The study ran from 1990-1995 in three cities.',
     'the study ran from nineteen ninety to nineteen ninety five in three cities .'),
    ('Send the form to first.last+tts@mail.example.co.uk by Monday.',
     'send the form to first dot last plus ^t ^t ^s at mail dot example dot ^co dot ^uk by monday .'),
    ('Turn left onto Elm Dr. and park behind the school.',
     'turn left onto elm drive and park behind the school .'),
    ('We packed tents, stoves, maps, etc.',
     'we packed tents , stoves , maps , et cetera .'),
    ('The update ships in March 2024, i.e. next quarter.',
     'the update ships in march twenty twenty four , that is next quarter .'),
    ('The flight departs at 06:45 and lands at 23:59.',
     'the flight departs at six forty five and lands at twenty three fifty nine .'),
    ('Download it from https://github.com/voxc/voxc/releases today.',
     'download it from ^h ^t ^t ^p ^s colon slash slash github dot ^com slash voxc slash voxc slash releases today .'),
    ('Go to example.org/help for the full list.',
     'go to example dot ^org slash help for the full list .'),
    ('The U.K. and the U.S. signed the deal.',
     'the ^u ^k and the ^u ^s signed the deal .'),
]


@pytest.mark.parametrize("written,spoken", SENTENCES, ids=[w[:40] for w, _ in SENTENCES])
def test_sentence(written, spoken):
    assert " ".join(T.normalize(written)) == spoken


@pytest.mark.parametrize("written", [w for w, _ in SENTENCES], ids=[w[:40] for w, _ in SENTENCES])
def test_every_word_gets_phones(written):
    ids = T.text_to_ids(written, errors="strict")
    assert T.ids_to_phones(ids)[-1] == "." and T.SYMBOL_TO_ID["<unk>"] not in ids
    for word in T.normalize(written):
        if word not in T.PUNCTUATION:
            phones = T._word_phones(word)
            assert phones and all(p in T.PHONES for p in phones), word


@pytest.mark.parametrize("written", [
    "Dr. Smith will call you back.",
    "Ask Dr. Lee about it.",
    "Dr. and Mrs. Brown arrived early.",
    "Mr. Jones met Ms. Wu and Prof. Adams.",
    "We drove down Main St. to the park.",
    "The St. Patrick's Day parade is long.",
    "Bring pens, paper, etc. for the exam.",
    "Use a fruit, e.g. an apple, as a snack.",
    "It is Team A vs. Team B tonight.",
    "Room No. 4 is at the end, i.e. past the lift.",
    "The talk starts at 9 a.m. sharp.",
    "See Fig. 3 and Ch. 2 for details.",
    "Mt. Fuji is beautiful at dawn.",
])
def test_abbreviation_period_is_not_a_sentence_end(written):
    tokens = T.normalize(written)
    assert tokens.count(".") == 1 and tokens[-1] == "."


@pytest.mark.parametrize("written,spoken", [
    ("Meet me at 10 a.m. Then we can talk.", "meet me at ten ^a ^m . then we can talk ."),
    ("We packed tents, maps, etc. Then we left.", "we packed tents , maps , et cetera . then we left ."),
    ("They moved to the U.S. Last year they moved back.",
     "they moved to the ^u ^s . last year they moved back ."),
    ("She lives on Baker St.", "she lives on baker street ."),
])
def test_abbreviation_period_that_also_ends_the_sentence(written, spoken):
    assert " ".join(T.normalize(written)) == spoken


@pytest.mark.parametrize("written,spoken", [
    ("$1", "one dollar"), ("$0.05", "five cents"), ("$2.5", "two point five dollars"),
    ("$1.01", "one dollar and one cent"), ("£1m", "one million pounds"), ("$10k", "ten thousand dollars"),
    ("2nd", "second"), ("100th", "one hundredth"), ("1,000,000", "one million"),
    ("10:00", "ten o'clock"), ("12:05 pm", "twelve oh five ^p ^m"), ("7PM", "seven ^p ^m"),
    ("25:99", "twenty five , ninety nine"),  # not a time
    ("in 2005", "in two thousand five"), ("in 1905", "in nineteen oh five"), ("2024 people", "two thousand twenty four people"),
    ("3/4", "three quarters"), ("1/8", "one eighth"), ("5/8", "five eighths"),
    ("-3", "minus three"), ("COVID-19", "^covid nineteen"), ("0.5", "zero point five"),
    ("1 mile", "one mile"), ("1 km", "one kilometer"), ("5G", "five g"), ("#1", "number one"),
    ("12/31/99", "december thirty first , ninety nine"), ("31/12/2023", "the thirty first of december twenty twenty three"),
    ("10**30", "ten thirty"), ("1000000000000000000", " ".join(["one"] + ["zero"] * 18)),
])
def test_fragments(written, spoken):
    assert " ".join(T.normalize(written)) == spoken


def test_number_words_come_from_num2words_without_and():
    assert N.cardinal(105) == ["one", "hundred", "five"]
    assert N.ordinal(101) == ["one", "hundred", "first"]
    assert N.year(1999) == ["nineteen", "ninety", "nine"] and N.year(2010) == ["twenty", "ten"]
    assert T.number_to_words(-1203) == "minus one thousand two hundred three"


def test_spelled_letters_use_the_letter_name():
    assert T.text_to_phones("7 a.m.") == ["sil", "s", "eh", "v", "ah", "n", "ey", "eh", "m", "."]
    assert T.text_to_phones("UK") == ["sil", "y", "uw", "k", "ey", "sil"]  # in the dictionary as a word
