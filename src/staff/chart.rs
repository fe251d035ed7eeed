//! The `/stats` chart: the funnel of each dialogue as horizontal bars with drop-off, and the
//! temperatures, drawn with plotters into a PNG. The font (DejaVu Sans, for Cyrillic) is bundled.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::stats::Stats;

const FONT: &str = "sans-serif";
const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const WIDTH: u32 = 900;
const BAR_HEIGHT: u32 = 30;
/// Telegram rejects photos whose sides add up to more than 10,000 pixels.
const MAX_HEIGHT: u32 = 4000;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the bundled font does not load")]
    Font,
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

fn font_ready() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok { Ok(()) } else { Err(ChartError::Font) }
}

fn draw_err<E: std::fmt::Debug>(e: E) -> ChartError {
    ChartError::Draw(format!("{e:?}"))
}

/// Draws the stats as a PNG image.
pub fn png(stats: &Stats) -> Result<Vec<u8>, ChartError> {
    font_ready()?;
    let rows: usize = stats
        .funnels
        .iter()
        .map(|(_, s)| s.len() + 2)
        .sum::<usize>()
        + 4;
    let height = (u32::try_from(rows)
        .unwrap_or(u32::MAX)
        .saturating_mul(BAR_HEIGHT)
        + 40)
        .clamp(240, MAX_HEIGHT);
    let mut rgb = vec![0u8; (WIDTH * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let title = TextStyle::from((FONT, 22).into_font()).color(&BLACK);
        let label = TextStyle::from((FONT, 15).into_font()).color(&BLACK);
        let right = label.pos(Pos::new(HPos::Right, VPos::Center));
        let left = label.pos(Pos::new(HPos::Left, VPos::Center));
        let bar_x0 = 230i32;
        let bar_max = 520i32;
        let mut y = 20i32;
        let step = BAR_HEIGHT as i32;
        let bar = |root: &DrawingArea<BitMapBackend, _>,
                   y: i32,
                   name: &str,
                   share: f64,
                   color: RGBColor,
                   note: &str|
         -> Result<(), ChartError> {
            root.draw(&Text::new(
                short(name, 24),
                (bar_x0 - 10, y + step / 2),
                right.clone(),
            ))
            .map_err(draw_err)?;
            let w = ((bar_max as f64) * share.clamp(0.0, 1.0)).round() as i32;
            root.draw(&Rectangle::new(
                [(bar_x0, y + 4), (bar_x0 + w.max(2), y + step - 4)],
                color.filled(),
            ))
            .map_err(draw_err)?;
            root.draw(&Text::new(
                note.to_owned(),
                (bar_x0 + w.max(2) + 8, y + step / 2),
                left.clone(),
            ))
            .map_err(draw_err)?;
            Ok(())
        };
        if stats.funnels.is_empty() {
            root.draw(&Text::new("Пока нет данных", (20, y), title.clone()))
                .map_err(draw_err)?;
            y += step * 2;
        }
        for (dialogue, steps) in &stats.funnels {
            if y > height as i32 - 3 * step {
                break;
            }
            root.draw(&Text::new(
                format!("Воронка «{}»", short(dialogue, 40)),
                (20, y),
                title.clone(),
            ))
            .map_err(draw_err)?;
            y += step + 6;
            let first = steps.first().map(|(_, n)| *n).unwrap_or(0).max(1) as f64;
            let mut prev: Option<i64> = None;
            for (name, n) in steps {
                if y > height as i32 - 3 * step {
                    break;
                }
                let drop = match prev {
                    Some(p) if p > 0 && *n <= p => {
                        format!("  −{:.0}%", (p - n) as f64 * 100.0 / p as f64)
                    }
                    _ => String::new(),
                };
                bar(
                    &root,
                    y,
                    name,
                    *n as f64 / first,
                    RGBColor(66, 133, 244),
                    &format!("{n}{drop}"),
                )?;
                prev = Some(*n);
                y += step;
            }
            y += step / 2;
        }
        let total: i64 = stats
            .temperatures
            .iter()
            .map(|(_, n)| *n)
            .sum::<i64>()
            .max(1);
        if y <= height as i32 - 4 * step {
            root.draw(&Text::new("Температура", (20, y), title.clone()))
                .map_err(draw_err)?;
            y += step + 6;
            for (key, name, color) in [
                ("hot", "горячие", RGBColor(219, 68, 55)),
                ("warm", "тёплые", RGBColor(244, 180, 0)),
                ("cold", "холодные", RGBColor(66, 165, 245)),
            ] {
                let n = stats
                    .temperatures
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                bar(
                    &root,
                    y,
                    name,
                    n as f64 / total as f64,
                    color,
                    &n.to_string(),
                )?;
                y += step;
            }
        }
        root.present().map_err(draw_err)?;
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, WIDTH, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

fn short(s: &str, max: usize) -> String {
    super::card::cut(s, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stats {
        Stats {
            funnels: vec![(
                "default".into(),
                vec![
                    ("greet".into(), 10),
                    ("consent".into(), 8),
                    ("имя".into(), 5),
                ],
            )],
            temperatures: vec![("hot".into(), 2), ("cold".into(), 8)],
            ..Stats::default()
        }
    }

    #[test]
    fn the_chart_is_a_png_telegram_accepts() {
        let bytes = png(&sample()).expect("a chart");
        assert!(bytes.starts_with(&[0x89, b'P', b'N', b'G']));
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let reader = decoder.read_info().expect("decodes");
        let info = reader.info();
        assert_eq!(info.width, WIDTH);
        assert!(info.width + info.height <= 10_000);
        assert!(bytes.len() < 10 * 1024 * 1024);
    }

    #[test]
    fn empty_and_huge_stats_still_draw() {
        assert!(png(&Stats::default()).is_ok());
        let many = Stats {
            funnels: (0..50)
                .map(|d| {
                    (
                        format!("d{d}"),
                        (0..40).map(|s| (format!("step{s}"), 100 - s)).collect(),
                    )
                })
                .collect(),
            ..Stats::default()
        };
        let bytes = png(&many).expect("a chart");
        let reader = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .expect("decodes");
        assert!(reader.info().height <= MAX_HEIGHT);
    }

    #[test]
    fn drawing_actually_marks_pixels() {
        // Not a blank canvas: the bars and text leave non-white pixels.
        let bytes = png(&sample()).expect("a chart");
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .expect("decodes");
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).expect("a frame");
        let coloured = buf.chunks(3).filter(|p| p != &[255, 255, 255]).count();
        assert!(coloured > 1000, "{coloured} non-white pixels");
    }
}
