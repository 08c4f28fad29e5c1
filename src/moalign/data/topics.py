"""The task suite's topics (noun phrases) with keywords that fit them, and its task templates.

All written by the project. Topics are assigned to train / validation / test by a fixed hash
(:func:`moalign.data.prompts.topic_split`), so the splits never share a topic.
"""

from __future__ import annotations

# topic | keywords (used by the keyword constraints; single words so whole-word matching is simple)
_TOPIC_TABLE = """
volcanoes|lava,magma,eruption,crater
the water cycle|evaporation,rain,clouds,ocean
photosynthesis|sunlight,leaves,oxygen,energy
black holes|gravity,light,space,star
the human heart|blood,pulse,muscle,oxygen
earthquakes|plates,fault,shaking,energy
rainbows|light,colours,rain,sun
honeybees|hive,pollen,honey,queen
coral reefs|ocean,fish,colour,warming
the moon|tides,orbit,craters,night
solar panels|sunlight,energy,roof,electricity
wind turbines|wind,blades,electricity,energy
electric cars|battery,charging,motor,range
recycling plastic|bottles,waste,bins,environment
composting at home|soil,waste,garden,worms
learning a new language|words,practice,grammar,speaking
playing the guitar|chords,strings,practice,music
learning to swim|water,breathing,pool,practice
running a marathon|training,distance,shoes,race
growing tomatoes|seeds,soil,water,sunlight
baking bread|flour,yeast,oven,dough
making a cup of tea|water,leaves,cup,kettle
keeping a journal|writing,habit,thoughts,pages
saving money|budget,savings,bank,spending
job interviews|questions,preparation,employer,confidence
public speaking|audience,voice,practice,nerves
time management|schedule,tasks,priorities,focus
getting enough sleep|rest,night,bedtime,energy
drinking enough water|hydration,body,thirst,health
the Roman Empire|emperor,legions,roads,Rome
ancient Egypt|pyramids,pharaoh,Nile,tombs
the printing press|books,ink,Gutenberg,printing
the first moon landing|astronauts,rocket,Apollo,moon
the invention of the telephone|calls,voice,wires,invention
the history of the bicycle|wheels,pedals,riding,invention
the Silk Road|trade,caravans,silk,merchants
the Olympic Games|athletes,medals,sports,nations
chess|board,pieces,strategy,checkmate
football|goal,team,ball,players
basketball|hoop,team,ball,court
tennis|racket,court,serve,ball
mountain hiking|trail,summit,boots,views
camping in the woods|tent,fire,stars,forest
visiting a museum|art,exhibits,history,visitors
train travel|tracks,stations,tickets,journey
city parks|trees,benches,paths,people
public libraries|books,reading,librarians,community
the internet|websites,networks,data,connection
smartphones|apps,screen,battery,calls
computer passwords|security,letters,accounts,safety
artificial intelligence|machines,learning,data,computers
video games|players,levels,screens,fun
email etiquette|messages,replies,tone,inbox
social media|posts,friends,sharing,online
3D printing|printer,plastic,layers,design
robots in factories|machines,automation,workers,assembly
weather forecasts|rain,temperature,clouds,prediction
hurricanes|wind,storm,ocean,rain
snow|winter,cold,flakes,ice
deserts|sand,heat,cactus,dry
rainforests|trees,rain,animals,canopy
the Arctic|ice,cold,bears,snow
penguins|ice,birds,swimming,colonies
elephants|trunk,herd,ivory,savanna
dolphins|ocean,swimming,pods,clicks
owls|night,feathers,hunting,eyes
butterflies|wings,caterpillar,flowers,colours
sharks|ocean,teeth,fins,predator
dogs as pets|walks,loyalty,training,play
cats as pets|purring,whiskers,play,independence
gardening for beginners|plants,soil,water,seeds
houseplants|leaves,light,water,pots
cooking pasta|water,salt,sauce,noodles
healthy breakfasts|fruit,oats,eggs,energy
chocolate|cocoa,sweet,beans,bar
coffee|beans,caffeine,cup,morning
pizza|cheese,dough,oven,tomato
vegetarian cooking|vegetables,beans,protein,recipes
painting with watercolours|brushes,paper,colours,water
photography|camera,light,lens,pictures
writing poetry|rhyme,words,rhythm,verses
reading novels|stories,characters,pages,books
classical music|orchestra,composers,symphony,violin
jazz|improvisation,saxophone,rhythm,musicians
dancing|steps,music,rhythm,movement
theatre|actors,stage,audience,plays
the solar system|planets,sun,orbit,moons
Mars|red,planet,rovers,dust
the stars at night|constellations,sky,light,telescope
the ocean tides|moon,water,beach,gravity
rivers|water,banks,flow,sea
mountains|peaks,snow,rocks,climbing
islands|sea,beaches,boats,sand
bridges|river,steel,engineering,crossing
skyscrapers|floors,elevators,steel,city
lighthouses|light,ships,coast,keepers
airplanes|wings,pilots,engines,flight
hot air balloons|basket,flight,fire,sky
submarines|ocean,depth,crew,pressure
vaccines|immunity,doctors,disease,health
washing your hands|soap,germs,water,hygiene
first aid|bandage,injury,help,safety
yoga|breathing,poses,stretching,calm
meditation|breathing,calm,mind,focus
friendship|trust,friends,kindness,time
volunteering|community,help,time,kindness
moving to a new city|neighbours,streets,change,home
starting a small business|customers,money,plan,product
online shopping|orders,delivery,prices,websites
electricity at home|wires,switches,power,bills
clocks and timekeeping|hours,minutes,time,gears
maps and navigation|directions,compass,roads,travel
the alphabet|letters,writing,sounds,words
numbers and counting|digits,counting,zero,math
fractions|numbers,parts,division,math
the metric system|metres,grams,litres,units
magnets|poles,iron,attraction,force
sound waves|vibration,ears,noise,music
light bulbs|electricity,light,glass,energy
glass making|sand,heat,furnace,glass
paper making|wood,pulp,water,sheets
cotton clothing|fabric,plants,threads,shirts
bees and flowers|pollen,nectar,flowers,bees
bird migration|flight,seasons,south,flocks
the seasons of the year|summer,winter,spring,autumn
birthdays|cake,candles,presents,friends
weddings|guests,rings,celebration,vows
board games|dice,players,rules,turns
puzzles|pieces,patience,solution,picture
kites|wind,string,sky,flying
fireworks|colours,sky,celebration,noise
umbrellas|rain,handle,fabric,weather
shoes|feet,laces,walking,leather
bicycles in cities|lanes,traffic,riding,helmets
bus networks|routes,stops,tickets,passengers
traffic lights|red,green,cars,safety
farming|crops,fields,farmers,harvest
fishing|boats,nets,sea,fish
forests|trees,animals,wood,leaves
wildfires|fire,smoke,forests,heat
clean air|pollution,breathing,cities,health
noise pollution|sound,cities,traffic,sleep
the Great Wall of China|wall,China,stones,history
the pyramids of Giza|pyramids,Egypt,stones,tombs
castles|walls,towers,knights,history
pirates|ships,treasure,sea,flags
dinosaurs|fossils,bones,extinction,reptiles
fossils|rocks,bones,ancient,layers
the human brain|neurons,memory,thinking,learning
teeth and dental care|brushing,dentist,teeth,sugar
the five senses|sight,hearing,touch,taste
emojis|faces,messages,symbols,phones
""".strip()

TOPICS: dict[str, tuple[str, ...]] = {
    topic: tuple(keywords.split(","))
    for topic, keywords in (line.split("|") for line in _TOPIC_TABLE.splitlines() if line.strip())
}
"""Topic -> keywords that naturally appear in an answer about it."""

TASK_TEMPLATES: dict[str, str] = {
    "explain": "Explain {topic} to a curious teenager.",
    "blog_post": "Write a short blog post about {topic}.",
    "pros_cons": "Describe the main benefits and drawbacks of {topic}.",
    "story": "Write a short story that involves {topic}.",
    "beginner_advice": "Give advice to a beginner who wants to learn about {topic}.",
    "summary": "Summarise what everyone should know about {topic}.",
    "letter": "Write a letter to a friend telling them about {topic}.",
    "misconceptions": "Describe some common misconceptions about {topic} and correct them.",
    "poem": "Write a poem about {topic}.",
    "news_report": "Write a news report about a new discovery related to {topic}.",
    "tips": "Share practical tips related to {topic}.",
    "speech": "Write a short speech about why {topic} matters.",
    "student_question": "Answer this question from a student: why should I care about {topic}?",
    "faq": "Write a short FAQ entry about {topic}.",
    "day_in_life": "Describe a typical day for someone whose work involves {topic}.",
    "history": "Tell the story of how people came to understand {topic}.",
}
"""Task name -> template with a ``{topic}`` slot."""
