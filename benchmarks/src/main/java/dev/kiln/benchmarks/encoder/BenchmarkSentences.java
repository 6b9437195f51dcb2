package dev.kiln.benchmarks.encoder;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The fixed English text set of {@link MiniLmSkipBenchmark}: 20 paraphrase pairs (for the nearest-neighbour check),
 * hand-written sentences on unrelated topics, and templated ones generated deterministically so that the set is the
 * same in every run and has many near-duplicate distractors.
 */
public final class BenchmarkSentences {
    /** Paraphrase pairs: element 0 and 1 of each row say the same thing in different words. */
    static final String[][] PARAPHRASES = {
        {"The cat is sleeping on the warm windowsill.", "A cat naps on the sunny window ledge."},
        {"How do I reset my email password?", "What are the steps to change a forgotten mail password?"},
        {"The stock market fell sharply this morning.", "Share prices dropped steeply early today."},
        {"She plays the violin in the city orchestra.", "She is a violinist with the municipal symphony."},
        {"It is going to rain heavily tomorrow afternoon.", "Expect strong showers tomorrow after lunch."},
        {"The train to Edinburgh was cancelled.", "Service to Edinburgh by rail has been called off."},
        {"He fixed the leaking kitchen tap himself.", "He repaired the dripping faucet in the kitchen on his own."},
        {"Children should eat more fruit and vegetables.", "Kids ought to have a diet richer in fruit and veg."},
        {"The museum is closed on Mondays.", "On Mondays the museum does not open."},
        {"Our team won the football match three to one.", "We beat the other side 3-1 in the soccer game."},
        {"The new phone has an excellent camera.", "This latest smartphone takes superb photos."},
        {"Please turn off the lights when you leave.", "Switch the lamps off on your way out, please."},
        {"The doctor prescribed antibiotics for the infection.", "The physician gave her medicine to treat the "
                + "bacterial infection."},
        {"I can't find my car keys anywhere.", "My car keys have gone missing and I have looked everywhere."},
        {"The river flooded the village after the storm.", "After the storm the village was under water from the "
                + "overflowing river."},
        {"This recipe needs two eggs and a cup of flour.", "You will need a cup of flour and a couple of eggs for "
                + "this dish."},
        {"The meeting has been moved to Thursday.", "We rescheduled the meeting for Thursday."},
        {"Learning a new language takes patience.", "It takes a lot of patience to pick up a foreign tongue."},
        {"The bakery sells fresh bread every morning.", "Every morning the baker's shop has freshly baked loaves."},
        {"The spacecraft landed safely on Mars.", "The probe touched down on the red planet without damage."},
    };

    private static final String[] HANDWRITTEN = {
        "Quantum computers exploit superposition to explore many states at once.",
        "The recipe calls for a pinch of saffron and slow cooking.",
        "Interest rates were raised by a quarter of a percentage point.",
        "He left the party early because he felt unwell.",
        "Photosynthesis converts light energy into chemical energy.",
        "The committee will publish its findings next spring.",
        "My grandmother grew tomatoes and beans in her back garden.",
        "A binary search halves the interval at every step.",
        "The violinist tuned her instrument before the concert.",
        "Volcanic ash grounded flights across northern Europe.",
        "Please submit your expense reports by Friday noon.",
        "The hikers reached the summit just before sunset.",
        "Whales communicate with songs that travel for miles.",
        "The judge dismissed the case for lack of evidence.",
        "Our neighbour's dog barks whenever the postman arrives.",
        "The library extended its opening hours during exams.",
        "Electric cars are becoming cheaper to run than petrol ones.",
        "She painted the fence a bright shade of yellow.",
        "The old lighthouse was converted into a small hotel.",
        "Mitochondria produce most of the cell's energy.",
        "The negotiations collapsed after the final offer was rejected.",
        "I prefer tea to coffee in the evenings.",
        "The printer on the third floor is jammed again.",
        "Ancient Romans built aqueducts to carry water into cities.",
        "The toddler stacked the wooden blocks into a tower.",
        "Heavy snow closed the mountain pass overnight.",
        "The software update fixed a security vulnerability.",
        "They celebrated their anniversary with a picnic by the lake.",
        "Bees are essential pollinators for many crops.",
        "The orchestra rehearsed the symphony for three weeks.",
        "Unemployment fell to its lowest level in a decade.",
        "The detective noticed a muddy footprint near the door.",
        "He is learning to play chess from online videos.",
        "The bridge was closed for repairs until further notice.",
        "A strong password mixes letters, numbers and symbols.",
        "The festival attracts thousands of visitors every summer.",
        "Sourdough bread needs a starter that is fed daily.",
        "The patient recovered quickly after the operation.",
        "Glaciers in the Alps are shrinking every year.",
        "The startup raised funding to expand into Asia.",
        "Why is the sky blue during the day?",
        "Turn left at the second roundabout and the station is on your right.",
        "The poem describes the sea at dawn.",
        "Our flight was delayed by four hours because of fog.",
        "The teacher asked the students to write an essay on friendship.",
        "Vaccines train the immune system to recognise pathogens.",
        "The kitten chased a ball of yarn across the floor.",
        "Solar panels on the roof cut our electricity bill in half.",
        "The museum acquired a rare medieval manuscript.",
        "He apologised for forgetting her birthday.",
        "Sorting algorithms differ in their worst-case behaviour.",
        "The farmer harvested the wheat before the rain came.",
        "The city council approved a new cycling lane.",
        "Coral reefs are threatened by rising sea temperatures.",
        "She finished the marathon in under four hours.",
        "The restaurant only accepts cash payments.",
        "Thunder rolled across the valley all night.",
        "The company recalled thousands of faulty chargers.",
        "A good night's sleep improves memory and mood.",
        "The archaeologists uncovered a Bronze Age settlement.",
        "Can you recommend a good book about history?",
        "The wind turbine generates power even on calm days.",
        "The choir sang carols in the town square.",
        "Inflation has eroded the value of savings.",
        "The puppy learned to sit after a week of training.",
        "The satellite images show the extent of the wildfire.",
        "My laptop battery drains faster than it used to.",
        "The opera house was renovated at great expense.",
        "Tides are caused mainly by the gravity of the moon.",
        "The chef sharpened his knives before service.",
    };

    private static final String[] SUBJECTS = {"The old farmer", "A young engineer", "My sister", "The new manager",
        "Our teacher", "The tired nurse", "A famous author"};
    private static final String[] VERBS = {"bought", "repaired", "painted", "sold", "borrowed", "described"};
    private static final String[] OBJECTS = {"a red bicycle", "the wooden table", "an antique clock",
        "a second-hand car", "the garden shed"};
    private static final String[] PLACES = {"in the village", "near the harbour", "at the market",
        "behind the school"};
    private static final String[] TIMES = {"last week.", "on Sunday morning.", "before the holidays."};

    private BenchmarkSentences() {
    }

    /**
     * All sentences: the paraphrase pairs first (sentence {@code 2i} and {@code 2i+1} are pair {@code i}), then the
     * others in a fixed shuffled order.
     *
     * @param templated how many templated sentences to add (distinct for up to 2520)
     */
    public static List<String> all(int templated) {
        List<String> out = new ArrayList<>();
        for (String[] pair : PARAPHRASES) {
            out.add(pair[0]);
            out.add(pair[1]);
        }
        List<String> rest = new ArrayList<>(List.of(HANDWRITTEN));
        // stepping each slot by a different stride makes neighbouring sentences differ in several slots at once;
        // the mixed-radix index keeps all of them distinct
        for (int i = 0; i < templated; i++) {
            int k = i * 397 % 2520;
            rest.add(SUBJECTS[k % 7] + " " + VERBS[k / 7 % 6] + " " + OBJECTS[k / 42 % 5] + " "
                    + PLACES[k / 210 % 4] + " " + TIMES[k / 840 % 3]);
        }
        Collections.shuffle(rest, new java.util.Random(7));
        out.addAll(rest);
        return out;
    }

    /** Number of paraphrase pairs at the start of {@link #all(int)}. */
    public static int pairs() {
        return PARAPHRASES.length;
    }
}
